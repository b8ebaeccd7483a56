"""Build hook of the wheel (everything else is in pyproject.toml).

The wheel carries what Vigil reads at run time besides its modules: the repository's top-level
data (schemas/, topics.yaml) as app/_data/ (found by app.packaged), and the mypyc-compiled modules
of app/_native/ when `python -m app.native.build` made them before the wheel was built.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent
#: Top-level data files and folders shipped inside the package, as app/_data/<name>.
DATA = ("schemas", "topics.yaml")


class BuildWithData(build_py):
    """build_py, then the data and the compiled modules copied next to the modules."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads them from the source tree
            return
        app = Path(self.build_lib) / "app"
        for name in DATA:
            source, target = ROOT / name, app / "_data" / name
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        native = ROOT / "app" / "_native"
        if (native / "manifest.json").is_file():
            shutil.copytree(native, app / "_native", dirs_exist_ok=True)


class VigilDistribution(Distribution):
    """With compiled modules the wheel is for this Python and platform (cp311-...-linux_x86_64)."""

    def has_ext_modules(self) -> bool:
        return (ROOT / "app" / "_native" / "manifest.json").is_file()


setup(cmdclass={"build_py": BuildWithData}, distclass=VigilDistribution)
