"""The lock files: requirements-runtime.lock is exactly what Vigil needs to run (pyproject's
dependencies and theirs; all the image installs), requirements-build.lock what building it adds,
requirements-dev.lock everything else on top of both; and every third-party module app/ imports
comes from the runtime set. Checked against the installed packages' own metadata."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

RUNTIME, BUILD, DEV = (REPO / f"requirements-{part}.lock" for part in ("runtime", "build", "dev"))
#: Modules of app/ that import what the runtime set lacks on purpose: they serve optional use.
OPTIONAL_IMPORTS = {
    "app/interop/faust.py": {"faust-streaming"},  # for users who run faust apps next to Vigil
    "app/native/build.py": {"mypy"},  # compiles app/native at build time (requirements-build.lock)
    "app/executor/plugins/ansible.py": {"ansible-runner"},  # the optional ansible extra (vigil[ansible])
}


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[str(canonicalize_name(name))] = version
    return pins


def _closure(requirements: list[str]) -> set[str]:
    """Distributions these requirements pull in (extras and markers honoured), from installed metadata."""
    seen: dict[str, set[str]] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        environments = [{"extra": ""}, *({"extra": extra} for extra in seen[name])]
        for text in metadata.distribution(requirement.name).requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                todo.append(needed)
    return set(seen)


def test_runtime_lock_is_exactly_what_pyproject_dependencies_need() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(_pins(RUNTIME)) == _closure(dependencies)


def test_build_lock_is_what_building_adds() -> None:
    assert set(_pins(BUILD)) == _closure(["mypy", "setuptools", "wheel"]) - set(_pins(RUNTIME))


def test_dev_lock_includes_the_others_and_repeats_none() -> None:
    lines = DEV.read_text().splitlines()
    assert "-r requirements-runtime.lock" in lines and "-r requirements-build.lock" in lines
    runtime, build, dev = _pins(RUNTIME), _pins(BUILD), _pins(DEV)
    assert not (runtime.keys() & build.keys()) and not (dev.keys() & (runtime.keys() | build.keys()))


def test_installed_versions_are_the_locked_ones() -> None:
    for path in (RUNTIME, BUILD, DEV):
        for name, version in _pins(path).items():
            assert metadata.version(name) == version, f"{path.name}: {name}"


def test_app_imports_only_runtime_packages() -> None:
    providers = metadata.packages_distributions()
    runtime = set(_pins(RUNTIME))
    missing = []
    for path in sorted((REPO / "app").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=relative)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "app" or top in sys.stdlib_module_names:
                    continue
                distributions = {canonicalize_name(d) for d in providers.get(top, [top])}
                if not distributions & runtime and not distributions & OPTIONAL_IMPORTS.get(relative, set()):
                    missing.append(f"{relative}:{node.lineno}: {module} ({', '.join(sorted(distributions))})")
    assert not missing, "not in requirements-runtime.lock (add to pyproject's dependencies):\n" + "\n".join(missing)
