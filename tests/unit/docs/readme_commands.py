"""The commands README.md shows: Vigil's CLI (`vigil ...`) and the benchmarks (`benchmarks/*.py`),
taken from its code blocks (indented four spaces) and from inline code that starts with `vigil `."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ReadmeCommand", "readme_commands"]

_INLINE = re.compile(r"`(vigil [^`]+)`")
_VIGIL = ("vigil", ".venv/bin/vigil")


@dataclass(frozen=True)
class ReadmeCommand:
    """One command: the program (`vigil` or a benchmark script path) and its arguments."""

    line: int
    text: str
    program: str
    args: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"README:{self.line}:{self.text[:60]}"


def _words(text: str) -> list[str] | None:
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    # `[--expect FILE]` marks an optional part: the option still has to exist
    return [w.strip("[]") for w in words if w.strip("[]") and w != "|"]


def _command(line_no: int, text: str) -> ReadmeCommand | None:
    words = _words(text)
    if not words:
        return None
    if words[0] in _VIGIL:
        return ReadmeCommand(line_no, text.strip(), "vigil", tuple(words[1:]))
    if len(words) > 1 and words[0].endswith("python") and re.fullmatch(r"benchmarks/\w+\.py", words[1]):
        return ReadmeCommand(line_no, text.strip(), words[1], tuple(words[2:]))
    return None


def readme_commands(readme: Path) -> list[ReadmeCommand]:
    """Every `vigil` and benchmark command README.md shows, with its line number."""
    out: list[ReadmeCommand] = []
    in_heredoc: str | None = None
    for n, raw in enumerate(readme.read_text().splitlines(), start=1):
        if in_heredoc is not None:  # the body of `cat > file <<'EOF'` is data, not commands
            if raw.strip() == in_heredoc:
                in_heredoc = None
            continue
        if raw.startswith("    "):
            if (m := re.search(r"<<-?'?(\w+)'?", raw)) is not None:
                in_heredoc = m.group(1)
            for part in raw.split("&&"):
                if (cmd := _command(n, part)) is not None:
                    out.append(cmd)
        else:
            for span in _INLINE.findall(raw):
                if (cmd := _command(n, span)) is not None:
                    out.append(cmd)
    return out
