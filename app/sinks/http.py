"""POSTing an encoded batch over HTTP, shared by the remote-write and OTLP sinks: which answers
mean "try again later" is each protocol's own (`retriable_status`), the rest is the same.

Connection errors and timeouts are always retriable. The answer's body (cut short) goes into the
error, since receivers say there what was wrong with a request they refuse."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from app.sinks.types import SendFailed

__all__ = ["HttpTransport"]

_BODY_SHOWN = 300


class HttpTransport:
    """One kept httpx client POSTing to `url` with fixed `headers` (and optional basic auth)."""

    def __init__(self, url: str, *, headers: Mapping[str, str], timeout_s: float,
                 retriable_status: Callable[[int], bool], auth: tuple[str, str] | None = None) -> None:
        self.url = url
        self.retriable_status = retriable_status
        self._client = httpx.Client(headers=dict(headers), timeout=timeout_s, auth=auth, follow_redirects=False,
                                    trust_env=False)

    def send(self, body: bytes) -> None:
        try:
            answer = self._client.post(self.url, content=body)
        except httpx.HTTPError as exc:
            raise SendFailed(f"POST {self.url}: {type(exc).__name__}: {exc}", retriable=True) from exc
        if answer.is_success:
            return
        text = answer.text[:_BODY_SHOWN].strip()
        raise SendFailed(f"POST {self.url}: HTTP {answer.status_code}{': ' + text if text else ''}",
                         retriable=self.retriable_status(answer.status_code))

    def close(self) -> None:
        self._client.close()
