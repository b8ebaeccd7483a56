"""Compile app.native.MODULES with mypyc into app/_native/ (see app.native).

    python -m app.native.build [--force]

Does nothing when the build there is up to date (same Python, same modules, same sources), so
`make` runs it every time. Without a C compiler it says so and exits 0: Vigil then runs its Python
sources, which are the same program, only slower. A type error that mypyc rejects fails the build
(exit 1) with mypy's message: that is a bug in the annotated sources.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from app.native import APP_ROOT, MANIFEST, MODULES, NATIVE_DIR, NativeFinder, source_hashes, source_path

__all__ = ["build", "dependencies", "is_up_to_date", "main"]

#: The mypyc group: its shared library is GROUP__mypyc.<ext>.
GROUP = "vigil_native"
#: The compile step (argv[1]: a JSON job). Other app modules are type-checked for their types only
#: (follow-imports=silent): an unrelated annotation problem must not stop the build.
_CHILD = f"""
import json, sys
from mypyc.build import mypycify
from setuptools import setup
job = json.loads(sys.argv[1])
options = ["--ignore-missing-imports", "--follow-imports=silent", "--cache-dir", job["cache"]]
setup(name="vigil-native", ext_modules=mypycify(job["paths"] + options, opt_level="3", group_name="{GROUP}",
                                                target_dir=job["c"]),
      script_args=["-q", "build_ext", "--build-lib", job["lib"], "--build-temp", job["tmp"]])
"""


def dependencies(modules: tuple[str, ...]) -> list[str]:
    """The modules and the `app` modules they import directly: what the compiled code was checked
    against (names, signatures, types), so a change in any of them makes the build stale."""
    found = dict.fromkeys(modules)
    for module in modules:
        tree = ast.parse(source_path(module).read_text(), filename=str(source_path(module)))
        for node in ast.walk(tree):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name == "app" or name.startswith("app."):
                    found.setdefault(name)
    return list(found)


def is_up_to_date(directory: Path = NATIVE_DIR) -> bool:
    """Whether `directory` holds a build of MODULES for this Python from the current sources."""
    finder = NativeFinder.from_manifest(directory)
    return finder is not None and finder.sources == source_hashes(dependencies(MODULES)) and all(
        (directory / f).is_file() for f in finder.files.values())


def c_compiler() -> str | None:
    """The C compiler Python's build uses, if it is installed."""
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def build(directory: Path = NATIVE_DIR) -> list[str]:
    """Compile MODULES into `directory` (replaced as a whole once the build succeeded). Returns the
    files written. Raises RuntimeError with mypyc's output when it fails."""
    sources = source_hashes(dependencies(MODULES))
    with tempfile.TemporaryDirectory(prefix="vigil-native-") as tmp:
        work = Path(tmp)
        out = work / "lib"
        # In a child process: setuptools and mypy keep global state, and their output is only
        # interesting when something fails.
        job = {"paths": [str(source_path(m).relative_to(APP_ROOT.parent)) for m in MODULES],
               "cache": str(work / "mypy-cache"), "c": str(work / "c"), "lib": str(out), "tmp": str(work / "tmp")}
        result = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(job)], cwd=APP_ROOT.parent,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            errors = [line for line in (result.stdout + result.stderr).splitlines() if ": error:" in line]
            raise RuntimeError("\n".join(errors) or (result.stdout + result.stderr)[-4000:])
        files = {}
        for so in out.rglob("*.so"):
            relative = so.relative_to(out)
            parts = relative.parts
            name = ".".join((*parts[:-1], parts[-1].split(".", 1)[0]))
            files[name] = str(relative)
        missing = [m for m in MODULES if m not in files]
        if missing:
            raise RuntimeError(f"mypyc built no extension for {', '.join(missing)}")
        (out / MANIFEST).write_text(json.dumps({
            "cache_tag": sys.implementation.cache_tag, "modules": list(MODULES), "files": files, "sources": sources,
        }, indent=1))
        staging = directory.with_name(directory.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(out, staging)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
        return sorted(files.values())


def main(argv: list[str] | None = None) -> int:
    """Command line: build when out of date; exit 1 only when mypyc rejects the sources."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="build even when up to date")
    args = parser.parse_args(argv)
    if not args.force and is_up_to_date():
        print(f"compiled modules up to date ({NATIVE_DIR})")
        return 0
    if c_compiler() is None:
        print("note: no C compiler found (install gcc to compile the pipeline's hot modules); "
              "Vigil runs its Python sources")
        return 0
    try:
        import mypyc  # noqa: F401
    except ImportError:
        print("note: mypyc is not installed (it comes with mypy, in requirements-build.lock); "
              "Vigil runs its Python sources")
        return 0
    try:
        files = build()
    except RuntimeError as exc:
        print(f"error: compiling {', '.join(MODULES)} with mypyc failed:\n{exc}", file=sys.stderr)
        return 1
    print(f"compiled {len(MODULES)} modules into {NATIVE_DIR} ({len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
