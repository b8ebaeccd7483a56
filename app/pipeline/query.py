"""Small pure helpers shared by the pipeline's HTTP queries: reading query parameters and turning
subject/name globs into key prefixes for range reads."""

from __future__ import annotations

from app.durations import DurationError, parse_duration_ms

__all__ = ["QueryError", "duration_param", "int_param", "key_prefix", "literal_prefix", "text_param"]


class QueryError(ValueError):
    """A query parameter is missing or malformed; the message names it (answered as HTTP 400)."""


def literal_prefix(glob: str) -> str:
    """The part of a glob before its first metacharacter (all of it when it has none)."""
    for i, c in enumerate(glob):
        if c in "*?[":
            return glob[:i]
    return glob


def key_prefix(subject: str, name: str, *, separator: str) -> str:
    """The longest key prefix every identity matching the globs shares, for keys that start with
    subject + separator + name."""
    prefix = literal_prefix(subject)
    if prefix != subject:
        return prefix
    return subject + separator + literal_prefix(name)


def text_param(query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    """The last value of a parameter, or the default when absent or empty."""
    values = query.get(name)
    return values[-1] if values and values[-1] != "" else default


def int_param(query: dict[str, list[str]], name: str, default: int, *, minimum: int | None = None) -> int:
    """An integer parameter, `default` when absent (QueryError when it is not an integer or is below
    `minimum`)."""
    text = text_param(query, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"{name}={text!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise QueryError(f"{name}={value} must be at least {minimum}")
    return value


def duration_param(query: dict[str, list[str]], name: str) -> int | None:
    """A duration parameter ("10s", "1m", or ms as a plain integer) in ms, None when absent."""
    text = text_param(query, name)
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        return parse_duration_ms(text)
    except DurationError as exc:
        raise QueryError(f"{name}: {exc}") from None
