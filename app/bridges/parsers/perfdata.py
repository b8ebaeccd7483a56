"""Nagios / Monitoring Plugins output and performance data, with units normalised.

Plugin output (Monitoring Plugins development guidelines, "Plugin Output"):

    TEXT OUTPUT | OPTIONAL PERFDATA
    LONG TEXT LINE 1
    LONG TEXT LINE 2 | PERFDATA LINE 2
    PERFDATA LINE 3

Perfdata items are `'label'=value[UOM];[warn];[crit];[min];[max]`, separated by spaces; a label
needs single quotes when it has spaces, and `''` stands for one quote inside a quoted label.

Units are normalised so that metrics of one kind compare across plugins:
    time     s, ms, us            → seconds
    size     B, KB, MB, GB, TB, PB (and KiB…PiB, kB) → bytes, 1024-based as the plugins compute them
    percent  %                    → stays a percentage (0-100)
    counter  c                    → stays a count
    none                          → stays as it is
An unknown UOM is kept unconverted and reported as the unit as written. value, min and max are
normalised; warn and crit are threshold ranges (e.g. `10:20`, `@~:5`) and are kept as written.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PerfValue", "normalise_unit", "parse_perfdata", "split_plugin_output"]

# UOM → (normalised unit, factor to that unit). Case matters: "B" is bytes, "c" is a counter.
_UNITS: dict[str, tuple[str, float]] = {
    "": ("", 1.0),
    "s": ("s", 1.0), "ms": ("s", 1e-3), "us": ("s", 1e-6),
    "%": ("%", 1.0),
    "c": ("c", 1.0),
    "B": ("B", 1.0),
    **{f"{p}B": ("B", 1024.0 ** (i + 1)) for i, p in enumerate("KMGTP")},
    **{f"{p}iB": ("B", 1024.0 ** (i + 1)) for i, p in enumerate("KMGTP")},
    "kB": ("B", 1024.0),
}
_VALUE = re.compile(r"^([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?|U)([^\d;\s]*)$")
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?$")


@dataclass(frozen=True)
class PerfValue:
    """One perfdata item; `value`/`min`/`max` are in `unit` (normalised), `uom` is as written."""

    label: str
    value: float | None  # None for "U" (the plugin could not determine it)
    unit: str
    uom: str
    warn: str = ""
    crit: str = ""
    min: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for an event's extended data."""
        return asdict(self)


def normalise_unit(value: float, uom: str) -> tuple[float, str]:
    """Convert a value in a perfdata UOM to the normalised unit; unknown units pass unchanged."""
    unit, factor = _UNITS.get(uom, (uom, 1.0))
    return value * factor, unit


def split_plugin_output(output: str) -> tuple[str, str, str]:
    """Split plugin output into (first-line text, long text, all perfdata joined by spaces)."""
    lines = output.replace("\r\n", "\n").split("\n")
    text, _, perf_first = lines[0].partition("|")
    long_lines: list[str] = []
    perf_parts = [perf_first.strip()]
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_parts.append(line.strip())
            continue
        before, bar, after = line.partition("|")
        long_lines.append(before.rstrip() if bar else line)
        if bar:
            perf_parts.append(after.strip())
            in_perf = True
    long_text = "\n".join(long_lines).strip("\n")
    return text.strip(), long_text, " ".join(p for p in perf_parts if p)


def parse_perfdata(text: str) -> tuple[list[PerfValue], list[str]]:
    """Parse perfdata; malformed items are skipped and described in the second list.

    Real plugins often emit slightly wrong perfdata; losing the check result over it would be
    worse than losing one graph, so problems are reported rather than raised.
    """
    values: list[PerfValue] = []
    problems: list[str] = []
    pos, end = 0, len(text)
    while pos < end:
        if text[pos].isspace():
            pos += 1
            continue
        label, pos, problem = _read_label(text, pos)
        if problem is None:
            spec_end = pos
            while spec_end < end and not text[spec_end].isspace():
                spec_end += 1
            item, problem = _parse_item(label, text[pos:spec_end])
            pos = spec_end
            if item is not None:
                values.append(item)
        if problem:
            problems.append(problem)
    return values, problems


def _read_label(text: str, pos: int) -> tuple[str, int, str | None]:
    """Read `label=` or `'quoted label'=`; return (label, position after '=', problem)."""
    end = len(text)
    if text[pos] == "'":
        chars: list[str] = []
        i = pos + 1
        while i < end:
            if text[i] == "'":
                if i + 1 < end and text[i + 1] == "'":
                    chars.append("'")
                    i += 2
                    continue
                break
            chars.append(text[i])
            i += 1
        if i >= end or i + 1 >= end or text[i + 1] != "=":
            return "", _skip_token(text, i), f"unterminated or unassigned quoted label at {text[pos:pos + 40]!r}"
        return "".join(chars), i + 2, None
    i = pos
    while i < end and text[i] != "=" and not text[i].isspace():
        i += 1
    if i >= end or text[i] != "=" or i == pos:
        return "", _skip_token(text, i), f"{text[pos:i][:40]!r} is not label=value"
    return text[pos:i], i + 1, None


def _skip_token(text: str, pos: int) -> int:
    while pos < len(text) and not text[pos].isspace():
        pos += 1
    return pos


def _parse_item(label: str, spec: str) -> tuple[PerfValue | None, str | None]:
    fields = (spec.split(";") + [""] * 5)[:5]
    match = _VALUE.match(fields[0])
    if not match:
        return None, f"{label!r:.40}: value {fields[0]!r:.40} is not a number with an optional unit"
    raw, uom = match.groups()
    unit = _UNITS.get(uom, (uom, 1.0))[0]
    value = None if raw == "U" else _normalised(raw, uom)
    if raw != "U" and value is None:
        return None, f"{label!r:.40}: value {raw!r:.40} is out of range"
    bounds = [_normalised(b, uom) if _NUMBER.match(b) else None for b in fields[3:5]]
    return PerfValue(label=label, value=value, unit=unit, uom=uom, warn=fields[1], crit=fields[2],
                     min=bounds[0], max=bounds[1]), None


def _normalised(raw: str, uom: str) -> float | None:
    # Some plugins print a decimal comma (locale); there is no thousands separator in perfdata.
    number = float(raw.replace(",", "."))
    value, _ = normalise_unit(number, uom)
    return value if math.isfinite(value) else None
