"""The outbound allowlist in the executor, against real HTTP and SMTP servers on loopback addresses.

Every server here listens on 127.0.0.0/8 and every name resolves (through a test resolver, never
DNS) to a loopback address: the refusals are proven on loopback addresses the test's allowlist
does not name, and each refused server is shown to have accepted no connection at all.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.executor import http_clients
from tests.tls import TestPki
from tests.unit.executor.conftest import make_action
from tests.unit.executor.http_server import IdempotentApi, idempotent_api
from tests.unit.executor.loopback import table_resolver

ALLOWED = "127.0.0.1"
REFUSED = "127.0.0.2"
OTHER_ALLOWED = "127.0.0.3"


def only(*addresses: str, schemes: tuple[str, ...] = ("http",)) -> dict:
    return {"allow": [{"networks": [f"{a}/32" for a in addresses], "schemes": list(schemes), "ports": ["*"]}]}


@pytest.fixture
def allowed() -> Iterator[IdempotentApi]:
    with idempotent_api(host=ALLOWED) as api:
        yield api


@pytest.fixture
def refused() -> Iterator[IdempotentApi]:
    with idempotent_api(host=REFUSED) as api:
        yield api


def http(url: str, action_id: str = "h1", **params: object) -> dict:
    return make_action(action_id, type="http", params={"url": url, **params})


def _nothing_reached(api: IdempotentApi) -> bool:
    return api.connections == 0 and api.requests == []


def test_allowed_address__request_goes_through(executor, allowed) -> None:
    h = executor(outbound=only(ALLOWED))
    h.run(http(f"{allowed.url}/hook", json={"x": 1}))
    [result] = h.results()
    assert result.status == "SUCCEEDED"
    assert [r.path for r in allowed.requests] == ["/hook"]


def test_address_not_in_the_allowlist__rejected_before_connecting(executor, allowed, refused) -> None:
    h = executor(outbound=only(ALLOWED), retries={"max_attempts": 3, "backoff": "1ms"})
    h.run(http(f"{refused.url}/hook", json={"x": 1}))
    [result] = h.results()
    assert (result.status, result.attempts) == ("REJECTED", 1), "a refusal is never retried"
    assert f"http://{REFUSED}:" in result.error and "127.0.0.2, a loopback address" in result.error
    assert "networks: [127.0.0.2/32]" in result.error, "the message says how to allow it"
    assert _nothing_reached(refused)
    assert len(h.outputs("actions-dlq")) == 1


def test_default_allowlist__refuses_loopback(executor, allowed) -> None:
    h = executor(outbound={})  # the shipped default: public addresses only
    h.run(http(f"{allowed.url}/hook"))
    [result] = h.results()
    assert result.status == "REJECTED" and "is not allowed" in result.error
    assert _nothing_reached(allowed)


def test_default_port_rule__refuses_other_ports(executor, allowed) -> None:
    h = executor(outbound={"allow": [{"networks": ["127.0.0.1/32"], "schemes": ["http"]}]})  # port 80 only
    h.run(http(f"{allowed.url}/hook"))
    [result] = h.results()
    assert result.status == "REJECTED" and "on standard ports" in result.error
    assert _nothing_reached(allowed)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_a_refused_address__rejected_and_never_sent(executor, allowed, refused, status) -> None:
    h = executor(outbound=only(ALLOWED))
    h.run(http(f"{allowed.url}/redirect?status={status}&to={refused.url}/internal", json={"x": 1}))
    [result] = h.results()
    assert result.status == "REJECTED"
    assert f"redirect 1 from {allowed.url}/redirect" in result.error and "127.0.0.2, a loopback" in result.error
    assert [r.path.split("?")[0] for r in allowed.requests] == ["/redirect"]
    assert _nothing_reached(refused)


def test_name_resolving_to_a_refused_address__rejected(executor, allowed, refused) -> None:
    port = refused.url.rsplit(":", 1)[1]
    h = executor(outbound=only(ALLOWED), resolver=table_resolver({"metadata.test": [REFUSED]}))
    h.run(http(f"http://metadata.test:{port}/latest"))
    [result] = h.results()
    assert result.status == "REJECTED"
    assert "metadata.test resolves to 127.0.0.2, a loopback address" in result.error
    assert _nothing_reached(refused)


def test_name_with_one_refused_address_among_allowed_ones__rejected(executor, allowed, refused) -> None:
    port = allowed.url.rsplit(":", 1)[1]
    h = executor(outbound=only(ALLOWED), resolver=table_resolver({"mixed.test": [ALLOWED, REFUSED]}))
    h.run(http(f"http://mixed.test:{port}/hook"))
    [result] = h.results()
    assert result.status == "REJECTED" and "127.0.0.2" in result.error
    assert _nothing_reached(allowed) and _nothing_reached(refused)


def test_name__resolved_once_and_connected_to_the_vetted_address_with_the_name_as_host(executor, allowed) -> None:
    """DNS rebinding: a second lookup would answer the refused address; there is none."""
    port = allowed.url.rsplit(":", 1)[1]
    answers = iter([[ipaddress.ip_address(ALLOWED)], [ipaddress.ip_address(REFUSED)]])
    lookups: list[str] = []

    async def resolver(host: str, p: int) -> list:
        lookups.append(host)
        return next(answers)

    h = executor(outbound=only(ALLOWED), resolver=resolver)
    h.run(http(f"http://api.test:{port}/hook"))
    [result] = h.results()
    assert result.status == "SUCCEEDED" and lookups == ["api.test"]
    [seen] = allowed.requests
    assert seen.headers["host"] == f"api.test:{port}"


def test_redirect_within_the_allowlist__followed_with_cross_origin_headers_dropped(executor, allowed) -> None:
    with idempotent_api(host=OTHER_ALLOWED) as other:
        h = executor(outbound=only(ALLOWED, OTHER_ALLOWED))
        h.run(http(f"{allowed.url}/redirect?status=307&to={other.url}/moved", method="PUT",
                   headers={"Authorization": "Bearer for-the-first-host", "X-Api-Key": "k"}, json={"x": 1}))
        [result] = h.results()
        assert result.status == "SUCCEEDED" and "after 1 redirect(s)" in result.output
        [first] = allowed.requests
        [moved] = other.requests
    assert first.headers["authorization"] == "Bearer for-the-first-host"
    assert (moved.method, moved.path, moved.body) == ("PUT", "/moved", b'{"x":1}'), "307 repeats method and body"
    assert "authorization" not in moved.headers and "x-api-key" not in moved.headers
    assert moved.headers["idempotency-key"] == "h1"


def test_redirects__capped_by_max_redirects(executor, allowed) -> None:
    h0, h3 = executor(http={"max_redirects": 0}), executor(http={"max_redirects": 3})
    h0.run(http(f"{allowed.url}/loop", "h0"))
    h3.run(http(f"{allowed.url}/loop", "h3"))
    [r0], [r3] = h0.results(), h3.results()
    assert r0.status == "FAILED" and "HTTP 302" in r0.error, "0: the redirect is the answer"
    assert r3.status == "FAILED" and "more than 3 redirect(s)" in r3.error
    assert len(allowed.requests) == 1 + 4


def test_https__pinned_address_keeps_the_name_for_sni_and_certificate(executor, tmp_path: Path,
                                                                       monkeypatch) -> None:
    pki = TestPki(tmp_path)
    cert = pki.issue("api", dns=["api.test"])
    monkeypatch.setattr(http_clients, "tls_context", lambda: ssl.create_default_context(cafile=pki.ca_file))
    with idempotent_api(host=ALLOWED, tls=(cert.cert_file, cert.key_file)) as api:
        port = api.url.rsplit(":", 1)[1]
        h = executor(outbound=only(ALLOWED, schemes=("https",)),
                     resolver=table_resolver({"api.test": [ALLOWED], "other.test": [ALLOWED]}))
        h.run(http(f"https://api.test:{port}/hook", "h1"), http(f"https://other.test:{port}/hook", "h2"))
        r1, r2 = h.results()
        assert r1.status == "SUCCEEDED", "the certificate is checked against api.test, not 127.0.0.1"
        assert r2.status == "FAILED" and "certificate" in r2.error.lower(), "a name the certificate lacks fails"
        assert [r.headers["idempotency-key"] for r in api.requests] == ["h1"]


def _listener(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(8)
    return sock


def test_email__relay_not_in_the_allowlist_rejected_and_never_connected(executor) -> None:
    with _listener(REFUSED) as relay:
        h = executor(outbound=only(ALLOWED, schemes=("smtp",)),
                     smtp={"host": REFUSED, "port": relay.getsockname()[1]})
        h.run(make_action("m1", type="email", params={"to": "ops@example.com", "subject": "x"}))
        [result] = h.results()
        assert result.status == "REJECTED"
        assert result.error.startswith("email: the smtp relay: smtp://127.0.0.2:")
        assert select.select([relay], [], [], 0)[0] == [], "no connection is waiting to be accepted"
