"""Compiled hot modules: the pipeline's pure modules, compiled to C extensions with mypyc.

`python -m app.native.build` (run by `make deps`, hence by `make test` and `make run`) compiles
MODULES into app/_native/ and records there, in a manifest, the hash of every source they were
built from: the modules themselves and the app modules they import. The sources stay the truth:

- `install()` (called when `app` is imported) puts a finder first on sys.meta_path that serves
  the compiled modules only while every recorded source is unchanged. One edited file (without a
  rebuild) makes all of them fall back to their Python sources, with one warning: compiled
  modules call each other directly, so a partly stale set is never used.
- No manifest (never built, no C compiler), another Python, or VIGIL_NATIVE=0: the Python sources.

Both are the same program: mypyc compiles the annotated Python as it is, and the test suite runs
the pipeline's unit tests both ways (tests/unit/native).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

__all__ = ["MANIFEST", "MODULES", "NATIVE_DIR", "NativeFinder", "describe_native", "install", "is_compiled",
           "native_status", "source_hashes", "source_path"]

log = logging.getLogger(__name__)

#: The modules compiled together (one mypyc group). Pure, fully annotated, on the per-event path
#: (the pipeline's, the rules' field access and match conditions, the routes' per-event loop, the
#: loop producing their copies and the delivery counting of every produced record, the store-key
#: codec the pipeline builds keys with, and the Avro reader and writer every consumed and produced
#: record goes through).
MODULES: Final = (
    "app.pipeline.aggregate",
    "app.pipeline.windows",
    "app.pipeline.status",
    "app.pipeline.flap",
    "app.pipeline.validate",
    "app.pipeline.tracker",
    "app.pipeline.archive",
    "app.pipeline.intake",
    "app.rules.fields",
    "app.rules.match",
    "app.rules.triggers",
    "app.rules.engine",
    "app.model.ids",
    "app.runtime.keys",
    "app.model.avro_plan",
    "app.model.avro_reader",
    "app.model.avro_writer",
    "app.routing.sampling",
    "app.routing.router",
    "app.runtime.deliveries",
    "app.runtime.copies",
)
APP_ROOT: Final = Path(__file__).resolve().parent.parent
#: Where the build puts the extensions and the manifest (not in git).
NATIVE_DIR: Final = APP_ROOT / "_native"
MANIFEST: Final = "manifest.json"
#: VIGIL_NATIVE=0 (or false/no/off): always the Python sources.
ENV_SWITCH: Final = "VIGIL_NATIVE"


def _switched_off() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def source_path(module: str) -> Path:
    """The source file of an `app.*` module (a package's __init__.py)."""
    base = APP_ROOT.parent.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def source_hashes(modules: list[str]) -> dict[str, str]:
    """{module: sha256 of its source} for `app.*` modules."""
    return {m: hashlib.sha256(source_path(m).read_bytes()).hexdigest() for m in modules}


@dataclass
class NativeFinder:
    """A sys.meta_path finder for the compiled modules of one build (see the module docstring)."""

    directory: Path
    #: module name -> extension file, relative to `directory` (the group's shared library included)
    files: dict[str, str]
    #: module -> source hash at build time
    sources: dict[str, str]
    #: None until checked: whether every source is unchanged
    fresh: bool | None = None

    @classmethod
    def from_manifest(cls, directory: Path) -> NativeFinder | None:
        """The finder of the build in `directory`, or None (no build, or built for another Python)."""
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("cache_tag") != sys.implementation.cache_tag or manifest.get("modules") != list(MODULES):
            return None
        return cls(directory, manifest["files"], manifest["sources"])

    def is_fresh(self) -> bool:
        """Whether every source the build used is unchanged (checked once, on first use)."""
        if self.fresh is None:
            try:
                changed = [m for m, h in source_hashes(list(self.sources)).items() if self.sources[m] != h]
            except OSError as exc:
                changed = [str(exc)]
            self.fresh = not changed
            if changed:
                log.warning("compiled modules in %s are stale (%s changed since the build): running the Python "
                            "sources; `make deps` (python -m app.native.build) rebuilds them",
                            self.directory, ", ".join(changed))
        return self.fresh

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(name)
        if file is None or not self.is_fresh():
            return None
        location = str(self.directory / file)
        return importlib.util.spec_from_file_location(name, location,
                                                      loader=importlib.machinery.ExtensionFileLoader(name, location))


_finder: NativeFinder | None = None


def install(directory: Path = NATIVE_DIR) -> NativeFinder | None:
    """Serve the compiled modules of `directory` (if built, fresh and not switched off); idempotent."""
    global _finder
    if _finder is not None:
        return _finder
    if _switched_off():
        return None
    _finder = NativeFinder.from_manifest(directory)
    if _finder is not None:
        sys.meta_path.insert(0, _finder)
    return _finder


def is_compiled(module: ModuleType | None) -> bool:
    """Whether an imported module was loaded from a compiled extension, not its Python source."""
    return str(getattr(module, "__file__", "")).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def native_status() -> dict[str, Any]:
    """Which modules run compiled: {"compiled": [...], "reason": why not, when none are}."""
    if _finder is None:
        reason = (f"{ENV_SWITCH}=0" if _switched_off()
                  else f"not built ({NATIVE_DIR / MANIFEST} missing or for another Python)")
        return {"compiled": [], "reason": reason}
    if _finder.fresh is False:
        return {"compiled": [], "reason": "stale: sources changed since the build"}
    compiled = [m for m in MODULES if is_compiled(sys.modules.get(m))]
    return {"compiled": compiled, "reason": "" if compiled else "not imported yet"}


def describe_native() -> str:
    """One line for start-up messages: 'compiled modules: 6' or 'Python sources (why)'."""
    status = native_status()
    if status["compiled"]:
        return f"compiled modules: {len(status['compiled'])}"
    return f"Python sources ({status['reason']})"
