"""GET /api/v1/stream: server-sent events carrying status changes, alerts, actions, their results and
silence changes as they arrive.

    event: status          id: EPOCH-SEQ      data: {vigil.Status fields, "rev": SEQ}
    event: alert | action | result | suppressed | silence
    event: reset           (refetch: the server cannot send everything this client missed)
    event: hello           (first event: the current id, whether the server is ready)

A browser's EventSource reconnects by itself and sends `Last-Event-ID`; the stream goes on right
after it (the ring of app.web.live). An id from another server process, or older than the ring
holds, gets a `reset` instead. `kinds=status,alert` sends only those kinds (the ids still advance:
a filtered batch ends with an id-only event, which moves the browser's last id without an event).
A comment every 15 s keeps idle connections open through proxies.
"""

from __future__ import annotations

import asyncio
from typing import Final

import orjson
from aiohttp import web

from app.web.api import CTX
from app.web.live import LiveItem
from app.web.params import ParamError, check_known, list_param, text_param

__all__ = ["KINDS", "stream"]

KINDS: Final = ("status", "alert", "action", "result", "suppressed", "silence")
_KEEPALIVE_S: Final = 15.0
_RETRY_MS: Final = 2000


def _frame(event: str, event_id: str, data: object) -> bytes:
    return f"event: {event}\nid: {event_id}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


async def stream(request: web.Request) -> web.StreamResponse:
    """The live stream (see the module docstring)."""
    ctx = request.app[CTX]
    q = request.query
    check_known(q, ("kinds", "last_event_id", "access_token"))
    kinds = set(list_param(q, "kinds")) or set(KINDS)
    unknown = kinds - set(KINDS)
    if unknown:
        raise ParamError("kinds", f"{sorted(unknown)[0]!r}: use some of {', '.join(KINDS)}")
    hub = ctx.hub
    ring = hub.ring
    last_id = request.headers.get("Last-Event-ID") or text_param(q, "last_event_id", max_length=100)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    waiter = hub.waiter()
    try:
        seq = ring.resume_point(last_id)
        hello = {"epoch": ring.epoch, "seq": ring.seq, "ready": hub.ready, "resumed": seq is not None and bool(last_id)}
        await resp.write(f"retry: {_RETRY_MS}\n\n".encode())
        if seq is None:
            seq = ring.seq
            await resp.write(_frame("reset", ring.event_id(seq), {"reason": "this stream cannot resume from "
                                                                            f"{last_id!r}: refetch"}))
        await resp.write(_frame("hello", ring.event_id(seq), hello))
        while True:
            waiter.clear()
            items = ring.after(seq)
            if items is None:
                seq = ring.seq
                await resp.write(_frame("reset", ring.event_id(seq),
                                        {"reason": "changes this client missed are no longer held: refetch"}))
                continue
            if items:
                seq = items[-1].seq
                await resp.write(_batch(items, kinds, ring.event_id(seq)))
                continue
            try:
                await asyncio.wait_for(waiter.wait(), _KEEPALIVE_S)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.forget(waiter)
    return resp


def _batch(items: list[LiveItem], kinds: set[str], last_id: str) -> bytes:
    epoch = last_id.rpartition("-")[0]
    parts = [_frame(item.kind, f"{epoch}-{item.seq}", item.data) for item in items
             if item.kind in kinds or item.kind == "reset"]
    last = items[-1]
    if last.kind not in kinds and last.kind != "reset":
        parts.append(f"id: {last_id}\n\n".encode())  # moves the client's last id past what it skipped
    return b"".join(parts)
