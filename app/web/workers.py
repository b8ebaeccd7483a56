"""Asking the workers (async): their per-partition query routes (app.pipeline.routes, app.rules.stage)
on every configured worker at once, answers merged as the CLI merges them (app.pipeline.merge).

A worker that does not answer leaves its partitions out; the answer says which worker was missing
(`missing`), so a page can show that it may be incomplete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from app.api_token import authorization_header
from app.pipeline.merge import merge_found_events, merge_statuses, merge_windows

__all__ = ["WorkerAnswers", "WorkersClient", "WorkersError"]

log = logging.getLogger(__name__)

_TIMEOUT_S: Final = 10.0


class WorkersError(Exception):
    """No worker answered, or one refused the query; the message says which and why."""


@dataclass
class WorkerAnswers:
    """The JSON bodies of the workers that answered (status < 500) and the ones that did not."""

    bodies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def ok(self) -> list[dict[str, Any]]:
        return [b for status, b in self.bodies if status == 200]


class WorkersClient:
    """The configured workers' HTTP APIs."""

    def __init__(self, urls: Sequence[str], *, token: bytes | None = None, timeout_s: float = _TIMEOUT_S) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.headers = authorization_header(token)  # the workers' query routes take Vigil's API token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self._session

    async def _one(self, url: str, path: str, params: dict[str, Any]) -> tuple[str, int, dict[str, Any] | None, str]:
        query = {k: str(v) for k, v in params.items() if v is not None}
        try:
            async with self._client().get(f"{url}{path}", params=query) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    return url, 0, None, f"{url}{path} did not answer JSON (HTTP {resp.status})"
                return url, resp.status, body, ""
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return url, 0, None, f"cannot reach the worker at {url}: {exc or type(exc).__name__}"

    async def get(self, path: str, params: dict[str, Any]) -> WorkerAnswers:
        """GET `path` from every worker. Raises WorkersError when none answers or one refuses (400)."""
        answers = await asyncio.gather(*(self._one(url, path, params) for url in self.urls))
        out = WorkerAnswers()
        errors = []
        for url, status, body, error in answers:
            if body is None or status >= 500:
                out.missing.append(url)
                errors.append(error or f"{url}{path}: HTTP {status}: {(body or {}).get('error', '')}")
                continue
            if status == 400:
                raise WorkersError(f"worker {url} refused {path}: {body.get('error', body)}")
            if status == 401:
                raise WorkersError(f"worker {url} requires a token: "
                                   + ("the token sent was refused" if self.headers else
                                      "set VIGIL_API_TOKEN or VIGIL_API_TOKEN_FILE for `vigil ui` too"))
            if status == 404 and "partitions" not in body:
                out.missing.append(url)
                errors.append(f"worker {url} has no {path} route (is it running the built-in stages?)")
                continue
            out.bodies.append((status, body))
        if not out.bodies:
            raise WorkersError("; ".join(errors) or "no worker configured")
        for error in errors:
            log.debug("ui: %s", error)
        return out

    async def statuses(self, *, subject: str, name: str, state: str | None = None) -> tuple[list[dict[str, Any]],
                                                                                          list[str]]:
        """Current statuses from the workers' tables, merged (and the workers that did not answer)."""
        answers = await self.get("/status", {"subject": subject, "name": name, "state": state})
        return merge_statuses(answers.ok()), answers.missing

    async def windows(self, *, subject: str, name: str, metric: str | None, size_ms: int | None,
                      last: int) -> tuple[list[dict[str, Any]], list[str]]:
        """Open and recent windows of one identity, merged."""
        answers = await self.get("/windows", {"subject": subject, "name": name, "metric": metric,
                                              "window": size_ms, "last": last})
        return merge_windows(answers.ok()), answers.missing

    async def find_events(self, *, subject: str, name: str, since_ms: int, until_ms: int,
                          limit: int) -> tuple[list[dict[str, Any]], list[str]]:
        """Indexed event references (id, time, identity, partition, offset), newest first."""
        answers = await self.get("/events/find", {"subject": subject, "name": name, "since_ms": since_ms,
                                                  "until_ms": until_ms, "limit": limit})
        return merge_found_events(answers.ok(), limit), answers.missing

    async def locate_event(self, event_id: str) -> dict[str, Any] | None:
        """Where the archive index says an event is, None when no worker has it."""
        answers = await self.get("/events/get", {"id": event_id})
        return next((b["event"] for status, b in answers.bodies if status == 200 and "event" in b), None)

    async def rules(self) -> dict[str, Any]:
        """The deployed rules (GET /rules of the workers running the rules stage), merged by name."""
        try:
            answers = await self.get("/rules", {})
        except WorkersError:
            return {"rules": [], "errors": []}
        rules: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        for body in answers.ok():
            for rule in body.get("rules", []):
                rules.setdefault(str(rule.get("name")), rule)
            errors.extend(str(e) for e in body.get("errors", []))
        return {"rules": [rules[k] for k in sorted(rules)], "errors": sorted(set(errors))}
