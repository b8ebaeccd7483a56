"""The outbound allowlist's decisions (pure: addresses are given, nothing is resolved or connected).

Non-loopback addresses appear here only as data for the decision function; no test sends them
any traffic."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from app.executor.allowlist import Destination, OutboundConfig, decide, prefilter, special_range
from app.executor.config import ExecutorConfig

PUBLIC = "93.184.215.14"  # a public address (never contacted)


def cfg(*rules: dict) -> OutboundConfig:
    return OutboundConfig.model_validate({"allow": list(rules)})


def verdict(config: OutboundConfig, url: str, *addresses: str):
    scheme, rest = url.split("://")
    host, port = rest.rsplit(":", 1)
    return decide(config, Destination(scheme, host.strip("[]"), int(port)),
                  [ipaddress.ip_address(a) for a in addresses])


DEFAULT = OutboundConfig()


@pytest.mark.parametrize(("url", "addresses", "allowed"), [
    ("https://hooks.example.com:443", [PUBLIC], True),
    ("http://hooks.example.com:80", [PUBLIC], True),
    ("https://hooks.example.com:8443", [PUBLIC], False),             # not a standard port
    ("ftp://hooks.example.com:21", [PUBLIC], False),                  # scheme
    ("http://metadata:80", ["169.254.169.254"], False),               # cloud metadata: link-local
    ("http://db:80", ["10.1.2.3"], False),                            # private
    ("http://db:80", ["172.20.0.1"], False),
    ("http://db:80", ["192.168.1.1"], False),
    ("http://cgnat:80", ["100.64.0.1"], False),                       # shared address space
    ("http://x:80", ["127.0.0.1"], False),                            # loopback
    ("http://x:80", ["0.0.0.0"], False),                              # unspecified
    ("http://x:80", ["::1"], False),
    ("http://x:80", ["::ffff:127.0.0.1"], False),                     # IPv4-mapped loopback
    ("http://x:80", ["::ffff:93.184.215.14"], True),                  # IPv4-mapped public: judged as IPv4
    ("http://x:80", ["fe80::1"], False),
    ("http://x:80", ["fd00::1"], False),
    ("http://x:80", ["64:ff9b::a9fe:a9fe"], False),                   # NAT64 of 169.254.169.254
    ("http://x:80", ["224.0.0.1"], False),                            # multicast
    ("http://x:80", [PUBLIC, "10.0.0.1"], False),                     # one bad address refuses all
])
def test_default__public_web_only(url, addresses, allowed) -> None:
    assert verdict(DEFAULT, url, *addresses).allowed is allowed


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.2", "loopback"), ("10.0.0.1", "private"), ("169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"), ("192.0.2.1", "documentation"),
    ("fe80::1", "link-local"), ("ff02::1", "multicast"), (PUBLIC, None), ("2606:4700::1", None),
])
def test_special_range__names_what_an_address_is(address, kind) -> None:
    assert special_range(ipaddress.ip_address(address)) == kind


def test_internal_address__allowed_only_by_a_network_naming_it() -> None:
    rules = cfg({"networks": ["0.0.0.0/0"], "schemes": ["http"], "ports": ["*"]},
                {"networks": ["10.20.0.0/16"], "schemes": ["http"], "ports": [8080]})
    assert verdict(rules, "http://svc:8080", "10.20.1.2").allowed
    refused = verdict(rules, "http://svc:8080", "10.21.1.2")
    assert not refused.allowed and "svc resolves to 10.21.1.2, a private address" in refused.reason
    assert "networks: [10.21.1.2/32]" in refused.reason
    assert not verdict(rules, "http://svc:9090", "10.20.1.2").allowed, "the naming rule's port"


def test_catch_all_network__does_not_name_internal_addresses() -> None:
    rules = cfg({"networks": ["0.0.0.0/0", "::/0"], "schemes": ["http"], "ports": ["*"]})
    assert not verdict(rules, "http://x:80", "127.0.0.1").allowed
    assert not verdict(rules, "http://x:80", "10.0.0.1").allowed
    assert verdict(rules, "http://x:80", PUBLIC).allowed


def test_host_names__exact_and_wildcard_never_allow_internal_addresses_alone() -> None:
    rules = cfg({"hosts": ["hooks.example.com", "*.ops.example.com"], "schemes": ["https"]})
    assert verdict(rules, "https://hooks.example.com:443", PUBLIC).allowed
    assert verdict(rules, "https://HOOKS.example.com.:443", PUBLIC).allowed, "case and a trailing dot"
    assert verdict(rules, "https://a.b.ops.example.com:443", PUBLIC).allowed
    assert not verdict(rules, "https://ops.example.com:443", PUBLIC).allowed, "*.x is below x, not x"
    assert not verdict(rules, "https://evilops.example.com:443", PUBLIC).allowed
    assert not verdict(rules, "https://hooks.example.com.evil.test:443", PUBLIC).allowed
    rebound = verdict(rules, "https://hooks.example.com:443", "10.0.0.5")
    assert not rebound.allowed and "hooks.example.com resolves to 10.0.0.5, a private address" in rebound.reason


def test_host_address_literal__names_that_address() -> None:
    rules = cfg({"hosts": ["127.0.0.1"], "schemes": ["http"], "ports": ["8000-8100"]})
    assert verdict(rules, "http://127.0.0.1:8000", "127.0.0.1").allowed
    assert not verdict(rules, "http://127.0.0.1:8101", "127.0.0.1").allowed
    assert not verdict(rules, "http://localhost:8000", "127.0.0.1").allowed, "hosts match the URL's host"


def test_hosts_and_networks__both_must_hold() -> None:
    rules = cfg({"hosts": ["api.internal"], "networks": ["10.9.0.0/16"], "schemes": ["https"]})
    assert verdict(rules, "https://api.internal:443", "10.9.0.7").allowed
    assert not verdict(rules, "https://api.internal:443", "10.8.0.7").allowed
    assert not verdict(rules, "https://other.internal:443", "10.9.0.7").allowed


def test_ipv6_rules() -> None:
    rules = cfg({"networks": ["fd12:3456::/32"], "schemes": ["http"], "ports": ["*"]})
    assert verdict(rules, "http://[fd12:3456::1]:80", "fd12:3456::1").allowed
    assert not verdict(rules, "http://[fd12:3457::1]:80", "fd12:3457::1").allowed


def test_prefilter__refuses_without_dns_when_no_rule_could_match() -> None:
    rules = cfg({"hosts": ["hooks.example.com"], "schemes": ["https"]})
    assert prefilter(rules, Destination("https", "hooks.example.com", 443)) is None
    early = prefilter(rules, Destination("https", "exfil.attacker.test", 443))
    assert early is not None and not early.allowed
    assert "not allowed by the executor's outbound allowlist (allowed: https to hooks.example.com" in early.reason


def test_no_addresses__refused() -> None:
    assert not decide(DEFAULT, Destination("https", "x", 443), []).allowed


@pytest.mark.parametrize(("rule", "error"), [
    ({"schemes": ["https"]}, "give hosts or networks"),
    ({"hosts": ["a b"]}, "is not a host name"),
    ({"hosts": ["*.*.x"]}, "is not a host name"),
    ({"networks": ["10.0.0.1/8"]}, "is not a network in CIDR form"),
    ({"networks": ["10.0.0.0/8"], "ports": ["99999"]}, "ports are 1..65535"),
    ({"networks": ["10.0.0.0/8"], "ports": ["x"]}, "is not a port"),
    ({"networks": ["10.0.0.0/8"], "schemes": ["gopher"]}, "gopher have no standard port"),
    ({"networks": ["10.0.0.0/8"], "schemes": []}, "schemes is empty"),
    ({"networks": ["10.0.0.0/8"], "verify": False}, "Extra inputs are not permitted"),
])
def test_config__bad_rules_are_named(rule, error) -> None:
    with pytest.raises(ValidationError, match=error.replace("(", r"\(")):
        ExecutorConfig.model_validate({"outbound": {"allow": [rule]}})


def test_config__an_allow_list_replaces_the_default() -> None:
    config = ExecutorConfig.model_validate({"outbound": {"allow": [{"hosts": ["a.example.com"]}]}})
    assert [r.hosts for r in config.outbound.allow] == [["a.example.com"]]
    assert [str(n) for n in ExecutorConfig().outbound.allow[0].networks] == ["0.0.0.0/0", "::/0"]
