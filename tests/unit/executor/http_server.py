"""A local HTTP server that behaves like an idempotent API: the first request with an
Idempotency-Key executes (counted), later requests with the same key get the stored answer
without executing again. `/redirect?to=URL&status=302` answers with a redirect instead, `/loop`
redirects to itself.
Used by the http plugin's unit tests and the executor's SIGKILL test.

Bound to a loopback address only (127.0.0.0/8): tests send traffic nowhere else."""

from __future__ import annotations

import json
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class IdempotentApi:
    """State of the server; `on_execute(key, n)` runs inside the first request of each key (the
    n-th key executed), before the answer is sent (a test can kill the client there)."""

    on_execute: Callable[[str, int], None] | None = None
    requests: list[Seen] = field(default_factory=list)
    executed: Counter[str] = field(default_factory=Counter)
    execution_order: list[str] = field(default_factory=list)
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    #: TCP connections accepted (a refused destination must have none)
    connections: int = 0

    def handle(self, seen: Seen) -> tuple[int, bytes, dict[str, str]]:
        """Record the request; (status, body, extra headers) to answer."""
        url = urlsplit(seen.path)
        if url.path == "/loop":  # redirects to itself, forever
            with self.lock:
                self.requests.append(seen)
            return 302, b"", {"Location": "/loop"}
        if url.path == "/redirect":
            query = parse_qs(url.query)
            with self.lock:
                self.requests.append(seen)
            return int(query.get("status", ["302"])[0]), b"", {"Location": query["to"][0]}
        return (*self._idempotent(seen), {})

    def _idempotent(self, seen: Seen) -> tuple[int, bytes]:
        key = seen.headers.get("idempotency-key", "")
        status = int(seen.path.rsplit("/", 1)[-1]) if seen.path.startswith("/status/") else 200
        with self.lock:
            self.requests.append(seen)
            if key and key in self.answers:
                return self.answers[key]  # a retry of a request already executed: same answer
            if status >= 300:
                return status, b'{"error": "as requested"}'
            self.executed[key] += 1
            self.execution_order.append(key)
            n = len(self.execution_order)
            answer = (200, json.dumps({"executed": key}).encode())
            if key:
                self.answers[key] = answer
        if self.on_execute is not None:
            self.on_execute(key, n)
        return answer

    def requests_per_key(self) -> Counter[str]:
        with self.lock:
            return Counter(r.headers.get("idempotency-key", "") for r in self.requests)


@contextmanager
def idempotent_api(on_execute: Callable[[str, int], None] | None = None, *, host: str = "127.0.0.1",
                   tls: tuple[Path, Path] | None = None) -> Iterator[IdempotentApi]:
    """Serve an IdempotentApi on `host` (a loopback address; a free port) for the duration of the
    block; over HTTPS with `tls` = (certificate file, key file)."""
    if not ip_address(host).is_loopback:
        raise ValueError(f"test servers listen on loopback addresses only, not {host}")
    api = IdempotentApi(on_execute=on_execute)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                # The client died between its headers and the end of its body (a test killed it
                # mid-request): like a real server, never act on a truncated request.
                self.close_connection = True
                return
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            status, answer, extra = api.handle(seen)
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                pass  # the client is gone (a test killed it mid-request)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    class Server(ThreadingHTTPServer):
        def verify_request(self, request: object, client_address: object) -> bool:
            with api.lock:
                api.connections += 1
            return True

    server = Server((host, 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    api.url = f"{'https' if tls else 'http'}://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
