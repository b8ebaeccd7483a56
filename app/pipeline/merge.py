"""Merging the answers of several workers to one query (pure). Each worker answers for the
partitions it holds; while a partition moves, two may both answer for it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["merge_found_events", "merge_statuses", "merge_windows"]

Body = dict[str, Any]


def merge_statuses(bodies: Iterable[Body | None]) -> list[dict[str, Any]]:
    """The statuses of every /status answer, one per identity (the fresher when two workers answer
    for it), sorted by subject and name."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for body in bodies:
        for s in (body or {}).get("statuses", []):
            key = (s["subject"], s["name"])
            if key not in merged or s["last_seen"] > merged[key]["last_seen"]:
                merged[key] = s
    return [merged[k] for k in sorted(merged)]


def merge_windows(bodies: Iterable[Body | None]) -> list[dict[str, Any]]:
    """The windows of every /windows answer, one per (size, start, metric), in that order."""
    merged: dict[tuple[int, int, str], dict[str, Any]] = {}
    for body in bodies:
        for w in (body or {}).get("windows", []):
            merged[(w["size_ms"], w["window_start"], w["metric"])] = w
    return [merged[k] for k in sorted(merged)]


def merge_found_events(bodies: Iterable[Body | None], limit: int) -> list[dict[str, Any]]:
    """The event references of every /events/find answer, one per id, newest first, at most `limit`."""
    merged = {e["id"]: e for body in bodies for e in (body or {}).get("events", [])}
    return sorted(merged.values(), key=lambda e: (e["time"], e["id"]), reverse=True)[:limit]
