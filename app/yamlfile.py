"""Config files in YAML validated by a pydantic model, with errors that name file, line and field:

    executor.yaml:12: commands.restart: unknown setting

One loader for every config file (beacons.yaml, executor.yaml, ...): parse once with line marks,
validate, and point each validation error at the line of the part of the document it is about.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["line_of", "load_yaml_model", "yaml_error_line"]

M = TypeVar("M", bound=BaseModel)


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """':<line>' of a YAML syntax error ('' when PyYAML gives no position)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f":{mark.line + 1}" if mark else ""


def line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """1-based line a validation error points at (or the nearest enclosing part that exists).
    A whole section (a mapping or a list) is shown at its key, a scalar at its value."""
    key: yaml.Node | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if found is None:
                break
            key, node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            key, node = None, node.value[part]
        else:
            break
    shown = key if key is not None and isinstance(node, yaml.CollectionNode) else node
    return shown.start_mark.line + 1


def load_yaml_model(path: Path | str | None, model: type[M], *, error: type[Exception], what: str,
                    top_level: str = "a mapping of settings",
                    unknown_hint: Callable[[tuple[Any, ...]], str] | None = None) -> M:
    """Read and validate a YAML config file into `model`; None or an empty file means every default.

    Raises `error` with one line per problem: "<path>:<line>: <field>: <what is wrong>".
    `unknown_hint(loc)` may add a hint to "unknown setting" errors (e.g. the valid names)."""
    if path is None:
        return model()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}{yaml_error_line(exc)}: not valid YAML: {exc}") from exc
    if data is None:
        return model()
    if not isinstance(data, dict):
        raise error(f"{path}:1: the top level must be {top_level}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "top level"
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting" + (unknown_hint(loc) if unknown_hint else "")
            line = f":{line_of(root, loc)}" if root is not None else ""
            problems.append(f"{path}{line}: {where}: {msg}")
        raise error("\n".join(problems)) from exc
