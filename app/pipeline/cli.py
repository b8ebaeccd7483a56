"""`vigil status`, `vigil metrics`, `vigil events get` and `vigil events find`: queries of the
pipeline's tables through the workers' HTTP API (app.pipeline.routes), never by replaying topics.

Each worker answers for the partitions it holds; with several workers give every one with
--worker (repeatable) or VIGIL_WORKER_URL (comma-separated) and the answers are merged.
`events get` then reads the event itself from Kafka at the partition and offset the index names.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import click

from app.api_token import ApiTokenError, authorization_header, load_api_token
from app.cli import CliContext, pass_cli, print_json
from app.durations import DurationError, format_duration_ms, parse_duration_ms
from app.model.events import State
from app.pipeline.merge import merge_found_events, merge_statuses, merge_windows
from app.pipeline.validate import format_time_ms
from app.web.client import ApiClient, api_client, api_option

__all__ = ["DEFAULT_WORKER_URL", "events_find_command", "events_get_command", "fetch_statuses", "metrics_command",
           "query_workers", "show_items", "status_command", "worker_option"]

DEFAULT_WORKER_URL: Final = "http://127.0.0.1:8088"
_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class WorkerAnswer:
    """One worker's answer to a query: HTTP status and JSON body (None when unreachable)."""

    url: str
    status: int
    body: dict[str, Any] | None
    error: str = ""


def worker_urls(given: tuple[str, ...]) -> list[str]:
    """--worker values, else VIGIL_WORKER_URL (comma/space separated), else the local default."""
    listed = given or re.split(r"[,\s]+", os.environ.get("VIGIL_WORKER_URL", ""))
    urls = [u.rstrip("/") for u in listed if u]
    for url in urls:
        if not re.match(r"^https?://[^/]+", url):
            raise click.BadParameter(f"{url!r}: expected an http(s) URL such as {DEFAULT_WORKER_URL}",
                                     param_hint="--worker / VIGIL_WORKER_URL")
    return urls or [DEFAULT_WORKER_URL]


def _get(url: str, path: str, params: dict[str, Any], headers: dict[str, str]) -> WorkerAnswer:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    request = urllib.request.Request(f"{url}{path}?{query}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return WorkerAnswer(url, 0, None, f"cannot reach the worker at {url}: {getattr(exc, 'reason', exc)}")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return WorkerAnswer(url, 0, None, f"{url}{path} did not answer a JSON object (HTTP {status}): is it a "
                                          "Vigil worker's HTTP API?")
    return WorkerAnswer(url, status, body)


def query_workers(urls: list[str], path: str, params: dict[str, Any]) -> list[WorkerAnswer]:
    """GET `path` from every worker. Unreachable ones are reported on stderr; if none answers, or a
    worker rejects the query (400) or the token (401), the command fails with the reason. Sends
    VIGIL_API_TOKEN (or the token in VIGIL_API_TOKEN_FILE) when one is set."""
    try:
        headers = authorization_header(load_api_token())
    except ApiTokenError as exc:
        raise click.ClickException(str(exc)) from exc
    answers = [_get(url, path, params, headers) for url in urls]
    reached = [a for a in answers if a.body is not None]
    for a in answers:
        if a.body is None and reached:
            click.echo(f"warning: {a.error}; its partitions are missing from the answer", err=True)
    if not reached:
        hint = "is `vigil worker` running? Point at it with --worker URL or VIGIL_WORKER_URL"
        raise click.ClickException(f"{answers[0].error} ({hint})")
    for a in reached:
        if a.status == 401:
            given = "the token sent was refused" if headers else "set VIGIL_API_TOKEN or VIGIL_API_TOKEN_FILE"
            raise click.ClickException(f"worker {a.url} requires a token: {given}")
        if a.status == 400 or a.status >= 500:
            raise click.ClickException(f"worker {a.url}: {a.body.get('error', a.status) if a.body else a.status}")
        if a.status == 404 and a.body and "partitions" not in a.body:
            raise click.ClickException(f"worker {a.url} has no {path} route: is it running the built-in pipeline?")
    return reached


def worker_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--worker", "workers", multiple=True, metavar="URL",
                        help=f"worker HTTP API (repeatable; env VIGIL_WORKER_URL; default {DEFAULT_WORKER_URL})")(fn)


def _age(now_ms: int, then_ms: int | None) -> str:
    """'5m3s ago' (whole seconds), 'in 2s' for times ahead of the clock, '-' for none."""
    if then_ms is None:
        return "-"
    delta = now_ms - then_ms
    size = abs(delta)
    text = format_duration_ms(size - size % 1000) if size >= 1000 else "<1s"
    return f"{text} ago" if delta >= 0 else f"in {text}"


def show_items(items: list[dict[str, Any]], *, as_json: bool, empty: str, headers: list[str],
               row: Callable[[dict[str, Any]], list[str]]) -> None:
    """Items as JSON lines (--json), else a table of `row(item)` under `headers`, or `empty` on
    stderr when there is none."""
    if as_json:
        for item in items:
            print_json(item)
    elif not items:
        click.echo(empty, err=True)
    else:
        _table([row(item) for item in items], headers)


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}"


def fetch_statuses(workers: tuple[str, ...], *, subject: str, name: str, state: str | None = None,
                   api_url: str | None = None) -> list[dict[str, Any]]:
    """Current statuses matching the globs, from every worker's /status, merged and sorted: through
    the Vigil API when it answers (and no worker was named), else from the workers directly."""
    client = _api(workers, api_url)
    if client is not None:
        try:
            rows = client.pages("/status", {"subject": subject, "name": name, "state": state, "source": "workers",
                                            "sort": "subject"}, items="items")
            return [{k: v for k, v in row.items() if k != "rev"} for row in rows]
        finally:
            client.close()
    answers = query_workers(worker_urls(workers), "/status", {"subject": subject, "name": name, "state": state})
    return merge_statuses(a.body for a in answers)


def _api(workers: tuple[str, ...], api_url: str | None) -> ApiClient | None:
    """The Vigil API client, unless workers were named (--worker or VIGIL_WORKER_URL: ask them)."""
    if workers or os.environ.get("VIGIL_WORKER_URL"):
        return None
    return api_client(api_url)


# -- vigil status ---------------------------------------------------------------------------------------
@click.command("status")
@click.argument("subject", default="*")
@click.option("--name", default="*", show_default=True, help="glob")
@click.option("--state", type=click.Choice([s.value for s in State], case_sensitive=False), help="only this state")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@worker_option
@api_option
def status_command(subject: str, name: str, state: str | None, as_json: bool, workers: tuple[str, ...],
                   api_url: str | None) -> None:
    """Current status of identities (SUBJECT is a glob, default all)."""
    now = int(time.time() * 1000)
    show_items(fetch_statuses(workers, subject=subject, name=name, state=state, api_url=api_url), as_json=as_json,
               empty="no matching identities",
               headers=["STATE", "SUBJECT", "NAME", "SINCE", "LAST SEEN", "EVENTS", "TEXT"],
               row=lambda s: [s["state"] + (" (flapping)" if s["flapping"] else ""), s["subject"], s["name"],
                              _age(now, s["since"]), _age(now, s["last_seen"]), str(s["event_count"]), s["text"][:60]])


# -- vigil metrics --------------------------------------------------------------------------------------
@click.command("metrics")
@click.argument("subject")
@click.argument("name")
@click.option("--metric", help="only this metric")
@click.option("--window", "window", metavar="DURATION", help="only windows of this size, e.g. 10s")
@click.option("--last", type=click.IntRange(min=1), default=10, show_default=True, help="windows per size")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@worker_option
@api_option
def metrics_command(subject: str, name: str, metric: str | None, window: str | None, last: int, as_json: bool,
                    workers: tuple[str, ...], api_url: str | None) -> None:
    """Open and recent metric windows of one identity."""
    size_ms = None
    if window is not None:
        try:
            size_ms = parse_duration_ms(window)
        except DurationError as exc:
            raise click.BadParameter(str(exc), param_hint="--window") from None
    client = _api(workers, api_url)
    if client is not None:
        try:
            windows = client.get("/metrics", {"subject": subject, "name": name, "metric": metric, "window": size_ms,
                                              "last": last})["windows"]
        finally:
            client.close()
    else:
        answers = query_workers(worker_urls(workers), "/windows", {"subject": subject, "name": name,
                                                                   "metric": metric, "window": size_ms, "last": last})
        windows = merge_windows(a.body for a in answers)
    show_items(windows, as_json=as_json,
               empty=f"no windows of {subject}/{name}" + (f" metric {metric}" if metric else ""),
               headers=["WINDOW", "START", "METRIC", "COUNT", "MEAN", "MIN", "MAX", "LAST", "P50", "P95", "P99", ""],
               row=lambda w: [format_duration_ms(w["size_ms"]), format_time_ms(w["window_start"]), w["metric"],
                              str(w["count"]), _number(w["mean"]), _number(w["min"]), _number(w["max"]),
                              _number(w["last"]), _number(w["p50"]), _number(w["p95"]), _number(w["p99"]),
                              "closed" if w.get("closed") else "open"])


# -- vigil events get / find ----------------------------------------------------------------------------
@click.command("get")
@click.argument("event_id")
@worker_option
@pass_cli
def events_get_command(cli: CliContext, event_id: str, workers: tuple[str, ...]) -> None:
    """Print one event, found by id through the archive index, as JSON."""
    answers = query_workers(worker_urls(workers), "/events/get", {"id": event_id})
    found = next((a.body["event"] for a in answers if a.status == 200 and a.body), None)
    if found is None:
        parts = sorted({p for a in answers for p in (a.body or {}).get("partitions", [])})
        raise click.ClickException(f"event {event_id} is not in the archive index (partitions searched: "
                                   f"{', '.join(map(str, parts)) or 'none'})")
    from app.pipeline.fetch import FetchError, fetch_event

    try:
        print_json(fetch_event(cli.settings, found, notify=lambda line: click.echo(line, err=True)))
    except FetchError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("find")
@click.option("--subject", default="*", show_default=True, help="glob")
@click.option("--name", default="*", show_default=True, help="glob")
@click.option("--since", default="1h", show_default=True, metavar="DURATION", help="events newer than this")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@worker_option
def events_find_command(subject: str, name: str, since: str, limit: int, as_json: bool,
                        workers: tuple[str, ...]) -> None:
    """List indexed events of matching identities, newest first."""
    try:
        since_ms = int(time.time() * 1000) - parse_duration_ms(since)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    answers = query_workers(worker_urls(workers), "/events/find",
                            {"subject": subject, "name": name, "since_ms": since_ms, "limit": limit})
    show_items(merge_found_events((a.body for a in answers), limit), as_json=as_json,
               empty="no matching events", headers=["TIME", "SUBJECT", "NAME", "TYPE", "ID", "PARTITION@OFFSET"],
               row=lambda e: [format_time_ms(e["time"]), e["subject"], e["name"], e["type"], e["id"],
                              f"{e['partition']}@{e['offset']}"])
