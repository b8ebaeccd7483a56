"""Checking action params in plugins: unknown keys and wrong types become ActionRejected with a
message naming the param (a rule author reads it in the ActionResult)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from app.executor.plugin import ActionRejected

__all__ = ["check_keys", "get_param", "string_map"]

T = TypeVar("T")
_REQUIRED: Any = object()


def check_keys(params: Mapping[str, Any], allowed: Iterable[str], *, plugin: str) -> None:
    """Refuse params the plugin does not know (a typo must not be silently ignored)."""
    allowed = tuple(allowed)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ActionRejected(f"{plugin}: unknown param(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")


def get_param(params: Mapping[str, Any], name: str, kind: type[T] | tuple[type, ...], *,
              default: Any = _REQUIRED, plugin: str) -> T:
    """`params[name]` if it has type `kind` (bool is never a number); `default` when absent."""
    if name not in params or params[name] is None:
        if default is _REQUIRED:
            raise ActionRejected(f"{plugin}: param {name} is required")
        return default
    value = params[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ActionRejected(f"{plugin}: param {name} must be {expected}, got {type(value).__name__}")
    return value  # type: ignore[return-value]


def string_map(params: Mapping[str, Any], name: str, *, plugin: str) -> dict[str, str]:
    """An optional object of string values (e.g. headers); {} when absent."""
    value = get_param(params, name, dict, default={}, plugin=plugin)
    bad = sorted(k for k, v in value.items() if not isinstance(v, str))
    if bad:
        raise ActionRejected(f"{plugin}: param {name}: value(s) of {', '.join(bad)} must be strings")
    return dict(value)
