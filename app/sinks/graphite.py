"""Graphite's plaintext protocol: `path value timestamp\\n` lines over TCP.

The path comes from a template over the window's identity (`vigil.{subject}.{name}.{metric}.
{window}.{aggregate}`); each field is made a single path node first (dots, spaces, slashes and
anything else but letters, digits, `-` and `_` become `_`), so a subject `web1.example.com` stays
one node and cannot open new branches. The timestamp is the window's START in seconds: Graphite
files a value under the bucket its timestamp falls in, and [start, end) is that bucket.
"""

from __future__ import annotations

import re
import socket
import string
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from app.sinks.types import Payload, SendFailed
from app.sinks.windows import AGGREGATES, COMMON_FIELD_VALUES, ClosedWindow, IdentityMemo

__all__ = ["GraphiteEncoder", "GraphiteTransport", "PathTemplate", "graphite_node"]

FIELDS: Final = frozenset({"subject", "name", "metric", "window", "aggregate"})
_NOT_NODE = re.compile(r"[^A-Za-z0-9_\-]+")
#: where the aggregate goes in a path formatted once for all aggregates of a window
_MARK: Final = "\x00"


def graphite_node(text: str) -> str:
    """`text` as one Graphite path node ("web1.example.com" -> "web1_example_com"; "" -> "_")."""
    return _NOT_NODE.sub("_", text) or "_"


#: the node of the few names and metrics, made once (not per identity)
_common_node = lru_cache(maxsize=COMMON_FIELD_VALUES)(graphite_node)


class PathTemplate:
    """A compiled path template; ValueError names an unknown or malformed field."""

    def __init__(self, template: str) -> None:
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"path template {template!r}: {exc}") from None
        unknown = sorted({f for _, f, spec, conv in parsed if f is not None and (f not in FIELDS or spec or conv)})
        if unknown:
            raise ValueError(f"path template {template!r}: unknown field(s) {', '.join(unknown)}; "
                             f"use {{{'}, {'.join(sorted(FIELDS))}}}")
        self.template = template

    def path(self, window: ClosedWindow, aggregate: str) -> str:
        """The path of one aggregate of `window`."""
        return self.paths(window, (aggregate,))[aggregate]

    def paths(self, window: ClosedWindow, aggregates: Iterable[str]) -> dict[str, str]:
        """The path of each of `aggregates` of `window` (its fields made nodes once)."""
        fields = {"subject": graphite_node(window.subject), "name": _common_node(window.name),
                  "metric": _common_node(window.metric), "window": window.window}
        if _MARK in self.template:  # (a template holding the mark itself) one format per aggregate
            return {agg: self.template.format(aggregate=agg, **fields) for agg in aggregates}
        # formatted once with a mark where the aggregate goes (fields are single nodes: never the mark)
        parts = self.template.format(aggregate=_MARK, **fields).split(_MARK)
        return {agg: agg.join(parts) for agg in aggregates}


class GraphiteEncoder:
    """Closed windows -> plaintext protocol lines (UTF-8); the paths are made once per identity."""

    def __init__(self, template: PathTemplate) -> None:
        self.template = template
        #: identity -> aggregate -> "path " (each line's start)
        self._paths: IdentityMemo[dict[str, str]] = IdentityMemo(
            lambda w: {agg: path + " " for agg, path in template.paths(w, AGGREGATES).items()})

    def encode(self, windows: list[ClosedWindow]) -> Payload:
        lines: list[str] = []
        samples = 0
        for w in windows:
            paths = self._paths.get(w)
            end = f" {w.start_ms // 1000}\n"
            for aggregate, value in w.values:
                lines.append(f"{paths[aggregate]}{value!r}{end}")
            samples += len(w.values)
        return Payload("".join(lines).encode(), samples)


class GraphiteTransport:
    """One TCP connection to carbon, opened when needed and dropped after an error (the next send
    reconnects). Every failure is retriable: carbon answers nothing, so a refused connection or a
    reset is all there is to tell."""

    def __init__(self, host: str, port: int, *, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._sock: socket.socket | None = None

    def send(self, body: bytes) -> None:
        try:
            if self._sock is None:
                self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            self._sock.sendall(body)
        except OSError as exc:
            self.close()
            raise SendFailed(f"graphite {self.host}:{self.port}: {exc}", retriable=True) from exc

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
