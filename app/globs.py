"""Glob matching for subjects, names and tags (shell-style: *, ?, [abc]), compiled once and cached."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["glob_matcher", "is_glob"]


def is_glob(pattern: str) -> bool:
    """True if the pattern has glob metacharacters (else plain equality is enough)."""
    return any(c in pattern for c in "*?[")


@lru_cache(maxsize=4096)
def glob_matcher(pattern: str) -> Callable[[str], object]:
    """A case-sensitive predicate for a shell-style glob: truthy when the string matches (a bool or
    a regex match, whichever is cheaper to get)."""
    if not is_glob(pattern):
        return pattern.__eq__
    return re.compile(fnmatch.translate(pattern)).match
