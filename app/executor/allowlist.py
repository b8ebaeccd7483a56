"""Where plugins may connect: the outbound allowlist of executor.yaml and the decision on one
destination (pure: no DNS, no sockets; the resolved addresses are given).

    outbound:
      allow:
        - networks: [0.0.0.0/0, "::/0"]       # the default: public addresses, http 80 and https 443
          schemes: [http, https]
        - hosts: [hooks.example.com, "*.ops.example.com"]
          schemes: [https]
          ports: [443, 8443]
        - networks: [10.20.0.0/16]           # an internal range, named explicitly
          schemes: [http]
          ports: ["8000-8099"]

A destination (scheme, host, port, the addresses its host resolves to) is allowed when one rule
lists its scheme and port (ports default to the schemes' standard ports; "*" is any), its host
matches one of the rule's `hosts` (exact, or `*.suffix` for any name below suffix) when the rule
has any, and every address lies in one of the rule's `networks` when it has any.

Addresses that are not public — loopback, private, link-local, shared (CGNAT), multicast,
unspecified, reserved, documentation, and the IPv6 forms that embed an IPv4 address — are refused
unless the rule names them explicitly: by a network inside that special range (127.0.0.1/32 or
10.20.0.0/16, never 0.0.0.0/0) or by the address itself in `hosts`. A host name alone never
allows one: what a name resolves to can change, so an internal destination is allowed by address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from app.net import url_of

__all__ = [
    "DEFAULT_PORTS",
    "Destination",
    "IPAddress",
    "IPNetwork",
    "OutboundConfig",
    "OutboundRule",
    "Verdict",
    "decide",
    "parse_address",
    "prefilter",
    "special_range",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Standard ports of the schemes plugins speak; a rule without `ports` allows these.
DEFAULT_PORTS: dict[str, tuple[int, ...]] = {
    "http": (80,), "https": (443,), "smtp": (25, 587), "smtps": (465,),
}

#: Addresses that are not public, by what they are (IANA special-purpose registries). Checked in
#: addition to `not is_global`, so a range missing here is still refused (with a vaguer name).
_SPECIAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "documentation"), ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"), ("198.18.0.0/15", "benchmarking"), ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("::ffff:0:0/96", "IPv4-mapped"),
    ("64:ff9b::/96", "NAT64"), ("64:ff9b:1::/48", "NAT64"), ("100::/64", "discard"),
    ("2001::/23", "reserved"), ("2001:db8::/32", "documentation"), ("2002::/16", "6to4"),
    ("fc00::/7", "private"), ("fe80::/10", "link-local"), ("fec0::/10", "site-local"), ("ff00::/8", "multicast"),
)
_SPECIAL_NETS: tuple[tuple[IPNetwork, str], ...] = tuple((ipaddress.ip_network(n), k) for n, k in _SPECIAL)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_HOST = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


@lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """`text` as an IP address (brackets and an IPv6 zone are accepted), or None for a name.
    Remembered (addresses are immutable): every request asks it for its host, several times."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def special_range(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("loopback", "private", ...), None when public."""
    for net, kind in _SPECIAL_NETS:
        if address.version == net.version and address in net:
            return kind
    return None if address.is_global else "non-public"


def _names_special(network: IPNetwork) -> bool:
    """True when `network` lies inside one special range, i.e. it names internal addresses on
    purpose (10.20.0.0/16) rather than covering them by accident (0.0.0.0/0)."""
    return any(network.version == net.version and network.subnet_of(net)  # type: ignore[arg-type]
               for net, _ in _SPECIAL_NETS)


def _ports(value: Any) -> Any:
    """`[443, "8000-8099", "*"]` -> [(443, 443), (8000, 8099), (1, 65535)]."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"{item!r} is not a port")
        if isinstance(item, int):
            low = high = item
        elif isinstance(item, str) and item.strip() == "*":
            low, high = 1, 65535
        elif isinstance(item, str) and re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?", item):
            parts = [int(p) for p in item.split("-")]
            low, high = parts[0], parts[-1]
        elif isinstance(item, list | tuple) and len(item) == 2:
            low, high = int(item[0]), int(item[1])
        else:
            raise ValueError(f"{item!r} is not a port, a range like \"8000-8099\" or \"*\"")
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"{item!r}: ports are 1..65535, low-high")
        out.append((low, high))
    return out


PortRanges = Annotated[list[tuple[int, int]], BeforeValidator(_ports)]


class OutboundRule(BaseModel):
    """One allow rule (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[str] = Field(default_factory=list,
                             description="names (exact or *.suffix) or IP addresses; lower case")
    networks: list[IPNetwork] = Field(default_factory=list, description="CIDRs every resolved address must be in")
    schemes: list[str] = Field(default_factory=lambda: ["http", "https"])
    ports: PortRanges = Field(default_factory=list, description="default: the schemes' standard ports")

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list):
            return v
        out: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise ValueError(f"{item!r} is not a host name")
            host = item.strip().lower().rstrip(".")
            address = parse_address(host)
            if address is not None:
                out.append(str(address))
            elif _HOST.fullmatch(host):
                out.append(host)
            else:
                raise ValueError(f"{item!r} is not a host name (exact, or *.example.com for any name below it)")
        return out

    @field_validator("networks", mode="before")
    @classmethod
    def _networks(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list):
            return v
        out: list[IPNetwork] = []
        for item in items:
            try:
                out.append(ipaddress.ip_network(str(item), strict=True))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a network in CIDR form (e.g. 10.20.0.0/16): {exc}") from None
        return out

    @field_validator("schemes", mode="before")
    @classmethod
    def _schemes(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if isinstance(items, list):
            items = [s.strip().lower() if isinstance(s, str) else s for s in items]
            for s in items:
                if not isinstance(s, str) or not _SCHEME.fullmatch(s):
                    raise ValueError(f"{s!r} is not a URL scheme (http, https, smtp, ...)")
        return items

    @model_validator(mode="after")
    def _complete(self) -> OutboundRule:
        if not self.hosts and not self.networks:
            raise ValueError("give hosts or networks (or both): a rule must say which destinations it allows")
        if not self.schemes:
            raise ValueError("schemes is empty: the rule would allow nothing")
        if not self.ports:
            unknown = [s for s in self.schemes if s not in DEFAULT_PORTS]
            if unknown:
                raise ValueError(f"scheme(s) {', '.join(unknown)} have no standard port: give ports")
        return self

    def port_allowed(self, scheme: str, port: int) -> bool:
        """Whether `port` is one this rule allows for `scheme`."""
        if self.ports:
            return any(low <= port <= high for low, high in self.ports)
        return port in DEFAULT_PORTS.get(scheme, ())

    def host_matches(self, host: str) -> bool:
        """Whether `host` (lower case, no trailing dot) is one of `hosts`."""
        return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in self.hosts)

    def names(self, address: IPAddress) -> bool:
        """Whether this rule names `address` explicitly (a network inside a special range holding
        it, or the address itself in `hosts`): what a non-public address needs to be allowed."""
        if str(address) in self.hosts:
            return True
        return any(address.version == n.version and address in n and _names_special(n) for n in self.networks)

    def describe(self) -> str:
        """The rule in one short line, for refusal messages."""
        where = ", ".join([*self.hosts, *(str(n) for n in self.networks)])
        ports = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.ports)
        return f"{'/'.join(self.schemes)} to {where} on {f'ports {ports}' if ports else 'standard ports'}"


def _public_web() -> list[OutboundRule]:
    return [OutboundRule(networks=["0.0.0.0/0", "::/0"], schemes=["http", "https"])]  # type: ignore[list-item]


class OutboundConfig(BaseModel):
    """`outbound:` of executor.yaml. An `allow` list given replaces the default one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[OutboundRule] = Field(default_factory=_public_web,
                                      description="default: public addresses over http(s) on ports 80/443")


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a plugin wants to connect: scheme, host (a lower-case name or an address), port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return url_of(self.scheme, self.host, self.port)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one destination: allowed or not, and why (for the ActionResult)."""

    allowed: bool
    reason: str
    rule: OutboundRule | None = None


def _normal_host(host: str) -> str:
    address = parse_address(host)
    return str(address) if address is not None else host.lower().rstrip(".")


def _unwrap(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is its IPv4 address: judged as such."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _candidates(config: OutboundConfig, dest: Destination) -> list[OutboundRule]:
    host = _normal_host(dest.host)
    return [r for r in config.allow
            if dest.scheme in r.schemes and r.port_allowed(dest.scheme, dest.port)
            and (not r.hosts or r.host_matches(host))]


def _not_listed(config: OutboundConfig, dest: Destination) -> Verdict:
    rules = "; ".join(r.describe() for r in config.allow) or "none"
    return Verdict(False, f"{dest} is not allowed by the executor's outbound allowlist (allowed: {rules})")


def prefilter(config: OutboundConfig, dest: Destination) -> Verdict | None:
    """A refusal that needs no DNS (no rule lists this scheme, port and host), else None.

    Checked before resolving, so a refused name is not even looked up."""
    if dest.port < 1 or dest.port > 65535:
        return Verdict(False, f"{dest}: port {dest.port} is not a TCP port")
    return None if _candidates(config, dest) else _not_listed(config, dest)


def _resolved_text(dest: Destination, judged: list[IPAddress]) -> str:
    """'name resolves to 10.0.0.5, a private address' (or just the address for a literal)."""
    shown = ", ".join(f"{a}, a {kind} address" if (kind := special_range(a)) else str(a) for a in judged)
    return shown if parse_address(dest.host) is not None else f"{dest.host} resolves to {shown}"


def _how_to_name(address: IPAddress) -> str:
    return f"networks: [{address}/{address.max_prefixlen}]"


def decide(config: OutboundConfig, dest: Destination, addresses: list[IPAddress]) -> Verdict:
    """Whether a plugin may connect to `dest`, whose host resolved to `addresses` (all of them are
    judged: one refused address refuses the destination, whichever the connection would pick)."""
    if not addresses:
        return Verdict(False, f"{dest}: {dest.host} resolved to no address")
    early = prefilter(config, dest)
    if early is not None:
        return early
    judged = [_unwrap(a) for a in addresses]
    refusal: Verdict | None = None
    for rule in _candidates(config, dest):
        if rule.networks and not all(any(a.version == n.version and a in n for n in rule.networks)
                                     for a in judged):
            continue
        unnamed = [a for a in judged if special_range(a) is not None and not rule.names(a)]
        if not unnamed:
            return Verdict(True, f"{dest} allowed by rule: {rule.describe()}", rule)
        refusal = refusal or Verdict(False, f"{dest}: {_resolved_text(dest, judged)}: refused unless an outbound "
                                            f"allow rule names it ({_how_to_name(unnamed[0])}, or a range inside it)")
    if refusal is not None:
        return refusal
    special = [a for a in judged if special_range(a) is not None]
    hint = (f"; a non-public address is allowed only by a rule naming it ({_how_to_name(special[0])})"
            if special else "")
    return Verdict(False, f"{_not_listed(config, dest).reason} ({_resolved_text(dest, judged)}){hint}")
