"""The CLI's client of the UI server's API: `vigil status`, `metrics`, `actions`, `trace`, `silence` and
`members` ask it when it answers (one place that knows the workers, keeps the history and checks
the token), and do what they always did -- ask the workers, read the topics -- when it does not.

    --api URL / VIGIL_API_URL      where (default http://127.0.0.1:8090); `--api ''` never asks it
    VIGIL_API_TOKEN(_FILE)         the bearer token sent along (Vigil's one API token), when set

An --api given explicitly that does not answer is an error; the default one that does not answer
is skipped quietly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Final

import click
import httpx

from app.api_token import ApiTokenError, load_api_token
from app.web.config import DEFAULT_UI_PORT

__all__ = ["DEFAULT_API_URL", "ApiClient", "ApiFailure", "api_client", "api_option"]

DEFAULT_API_URL: Final = f"http://127.0.0.1:{DEFAULT_UI_PORT}"
_PROBE_TIMEOUT_S: Final = 1.5
_TIMEOUT_S: Final = 60.0


class ApiFailure(click.ClickException):
    """The API answered with an error; the message is the server's."""


class ApiClient:
    """JSON calls to /api/v1 of one UI server."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = _TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def reachable(self) -> bool:
        """Whether a Vigil UI server answers there (its /info, within a second and a half)."""
        try:
            resp = self._http.get("/info", timeout=_PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return resp.status_code in (200, 401) and resp.headers.get("content-type", "").startswith("application/json")

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              json: Any = None) -> tuple[int, Any]:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, params=clean, json=json)
        except httpx.HTTPError as exc:
            raise ApiFailure(f"the Vigil API at {self.url} did not answer: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        return resp.status_code, body

    def get(self, path: str, params: dict[str, Any] | None = None, *, allow: tuple[int, ...] = ()) -> Any:
        """GET; an error status raises ApiFailure with the server's message (unless in `allow`)."""
        status, body = self._call("GET", path, params=params)
        return self._checked(status, body, allow)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON object (fields that are None are left out)."""
        status, answer = self._call("POST", path, json={k: v for k, v in body.items() if v is not None})
        return self._checked(status, answer, ())

    def delete(self, path: str) -> Any:
        status, answer = self._call("DELETE", path)
        return self._checked(status, answer, ())

    def _checked(self, status: int, body: Any, allow: tuple[int, ...]) -> Any:
        if status >= 400 and status not in allow:
            message = body.get("error") if isinstance(body, dict) else None
            raise ApiFailure(f"{self.url}: {message or f'HTTP {status}'}")
        return body

    def pages(self, path: str, params: dict[str, Any], *, items: str, page_size: int = 1000) -> Iterator[Any]:
        """Every item of a paged list (offset/limit), page by page."""
        offset = 0
        while True:
            body = self.get(path, {**params, "offset": offset, "limit": page_size})
            found = body.get(items, [])
            yield from found
            offset += len(found)
            if not found or offset >= int(body.get("total", 0)):
                return


def api_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--api URL (env VIGIL_API_URL)."""
    return click.option("--api", "api_url", metavar="URL", default=None,
                        help=f"the Vigil API (`vigil ui`) to ask first (env VIGIL_API_URL; default {DEFAULT_API_URL}; "
                             "'' never asks it)")(fn)


def api_client(api_url: str | None) -> ApiClient | None:
    """A client of the UI server when it answers; None to take the command's own path. An explicit
    --api (or VIGIL_API_URL) that does not answer is an error."""
    explicit = api_url if api_url is not None else os.environ.get("VIGIL_API_URL")
    if explicit == "":
        return None
    try:
        token = load_api_token()
    except ApiTokenError as exc:
        raise click.ClickException(str(exc)) from exc
    client = ApiClient(explicit or DEFAULT_API_URL, token=token.decode("utf-8", "replace") if token else None)
    if client.reachable():
        return client
    client.close()
    if explicit:
        raise click.ClickException(f"the Vigil API at {explicit} does not answer (is `vigil ui` running there? "
                                   "--api '' skips it)")
    return None
