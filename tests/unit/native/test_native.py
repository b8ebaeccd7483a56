"""The compiled hot modules (app.native): served only while fresh, and the same program as the
Python sources."""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.native import MANIFEST, MODULES, NATIVE_DIR, NativeFinder, native_status, source_hashes
from app.native.build import c_compiler, dependencies, is_up_to_date

REPO = Path(__file__).resolve().parents[3]


def _manifest(directory: Path, *, sources: dict[str, str], cache_tag: str = sys.implementation.cache_tag) -> None:
    files = {m: f"{m.replace('.', '/')}.so" for m in MODULES}
    (directory / MANIFEST).write_text(json.dumps({"cache_tag": cache_tag, "modules": list(MODULES), "files": files,
                                                  "sources": sources}))


def test_a_fresh_build_serves_its_extensions(tmp_path: Path) -> None:
    _manifest(tmp_path, sources=source_hashes(dependencies(MODULES)))
    finder = NativeFinder.from_manifest(tmp_path)
    assert finder is not None
    spec = finder.find_spec("app.pipeline.windows")
    assert spec is not None and spec.origin == str(tmp_path / "app/pipeline/windows.so")
    assert finder.find_spec("app.pipeline.agents") is None  # not compiled: the normal import system


def test_one_changed_source_makes_the_whole_set_fall_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sources = source_hashes(dependencies(MODULES))
    sources["app.durations"] = "0" * 64  # an imported module changed since the build
    _manifest(tmp_path, sources=sources)
    finder = NativeFinder.from_manifest(tmp_path)
    assert finder is not None
    with caplog.at_level(logging.WARNING, logger="app.native"):
        assert [finder.find_spec(m) for m in MODULES] == [None] * len(MODULES)
    (warning,) = caplog.records
    assert "stale (app.durations changed" in warning.getMessage() and "make deps" in warning.getMessage()


def test_a_build_for_another_python_or_module_set_is_ignored(tmp_path: Path) -> None:
    assert NativeFinder.from_manifest(tmp_path) is None  # none built
    _manifest(tmp_path, sources={}, cache_tag="cpython-399")
    assert NativeFinder.from_manifest(tmp_path) is None
    (tmp_path / MANIFEST).write_text("{not json")
    assert NativeFinder.from_manifest(tmp_path) is None


def test_the_build_depends_on_the_app_modules_the_compiled_ones_import() -> None:
    deps = dependencies(MODULES)
    assert deps[:len(MODULES)] == list(MODULES)
    assert {"app.durations", "app.runtime.tables", "app.pipeline.aggregate"} <= set(deps)
    assert all(d.startswith("app.") for d in deps)  # third-party libraries are not hashed


@pytest.mark.skipif(c_compiler() is None, reason="no C compiler: Vigil runs its Python sources")
def test_the_test_run_uses_the_compiled_modules() -> None:
    """`make test` builds them first; this keeps CI from testing only the Python sources."""
    assert is_up_to_date(), f"{NATIVE_DIR} is missing or stale: run `make native` (python -m app.native.build)"
    for module in MODULES:
        importlib.import_module(module)
    assert native_status() == {"compiled": list(MODULES), "reason": ""}


def test_the_unit_tests_of_the_compiled_modules_pass_on_the_python_sources() -> None:
    """The other half: the same tests with VIGIL_NATIVE=0 (the compiled run is the main suite)."""
    env = {**os.environ, "VIGIL_NATIVE": "0"}
    check = "import app.native, app.pipeline.windows as w; assert w.__file__.endswith('.py'), w.__file__"
    subprocess.run([sys.executable, "-c", check], env=env, cwd=REPO, check=True)
    tests = ["tests/unit/pipeline", "tests/unit/runtime/test_keys.py", "tests/unit/foundation/test_avro_reader.py",
             "tests/unit/foundation/test_avro_writer.py", "tests/unit/foundation/test_serde.py",
             "tests/unit/rules/test_rules_match.py"]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", *tests], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
