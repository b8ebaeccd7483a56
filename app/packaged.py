"""Where Vigil's data files are: in the installed package, or in the source tree.

A wheel carries the repository's top-level data (the built-in Avro schemas in schemas/, the
default topics.yaml) inside the package, as app/_data/ (setup.py puts them there); a source
checkout (an editable install, `make`) has them at the repository root, next to app/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["PACKAGED_DATA_DIR", "data_path"]

_APP: Final = Path(__file__).resolve().parent
#: The data directory inside an installed package (absent in a source checkout).
PACKAGED_DATA_DIR: Final = _APP / "_data"


def data_path(name: str) -> Path:
    """The path of a top-level data file or folder (`schemas`, `topics.yaml`): the packaged copy
    when Vigil is installed from a wheel, else the one in the source tree."""
    packaged = PACKAGED_DATA_DIR / name
    return packaged if packaged.exists() else _APP.parent / name
