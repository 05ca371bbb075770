"""Where the data that ships with the package lives (schemas, bundled index, bundled mirror).

A wheel carries them under ``adapterhub/_data/``; an editable install or a source checkout finds them
at the repository top level. Both are looked up here, in one place, so every caller finds them the
same way.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"adapterhub data directory {name!r} is missing from this installation "
        f"(looked in {_PACKAGE_DIR / '_data'} and {_PACKAGE_DIR.parent}); reinstall the package"
    )


@cache
def schemas_dir() -> Path:
    """Directory holding the JSON Schemas (``schemas/``)."""
    return _find("schemas")


@cache
def bundled_index_dir() -> Path:
    """The registry index that ships with the package (``registry_index/``)."""
    return _find("registry_index")


def bundled_mirror_dir() -> Path:
    """Content-addressed blobs of the sample adapters, shipped inside the bundled index."""
    return bundled_index_dir() / "mirror"
