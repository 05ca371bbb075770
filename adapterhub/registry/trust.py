"""Which indexes this user trusts, and with which root: the client side of index signing.

Trust starts from a root the user pinned for an index location (``adapterhub index trust LOCATION
--root root.json``, or the root pinned in this package for the bundled index). From then on every read
of that index is checked against signed metadata (:mod:`adapterhub.registry.tuf_client`), and the newest
metadata seen is kept so older metadata is refused. An index without a pinned root is read as before,
unauthenticated, unless ``ADAPTERHUB_REQUIRE_SIGNED_INDEX=1``.

State per index, under :func:`adapterhub.settings.trust_dir`, in ``<sha256(location)[:32]>/``:
``trust.json`` (the location and the pinned root's sha256), ``root.json`` (the pinned root),
``metadata/`` (python-tuf's trusted metadata: the highest versions seen) and ``.lock`` (every update
of ``metadata/`` happens under it; python-tuf's updater is not safe across processes on its own).
This module stays light: python-tuf is imported only when a trusted index is read.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from .. import resources, settings
from ..errors import IndexTrustError, NotFoundError
from ..fileio import atomic_write_bytes
from ..jsonio import dumps_pretty, load_strict, loads_strict
from .hub_index import is_hub_location, trust_key
from .layout import METADATA_DIR
from .trust_entry import TrustEntry

BUNDLED_ROOT_FILE = f"{METADATA_DIR}/1.root.json"
BUNDLED_ROOT_SHA256 = "b8634dd7048f72547c48c062875f06ef0e8eca88ef2be2d092f819e19c3ed6cc"
"""sha256 of the bundled index's first root: the trust anchor pinned in the package. Later roots are
accepted only through the signed rotation chain that starts here."""
MAX_ROOT_BYTES = 512_000


def location_key(location: str | Path) -> str:
    """The canonical name of an index location: a base URL ending in '/', ``hf:datasets/ORG/NAME`` (any
    revision: trust is per repository) or an absolute directory."""
    text = str(location)
    if is_hub_location(location):
        return trust_key(text)
    if text.startswith(("http://", "https://")):
        return text if text.endswith("/") else text + "/"
    if text.startswith("file://"):
        text = text[len("file://"):]
    return str(Path(text).expanduser().resolve())


def _store_dir(trust_dir: Path | None) -> Path:
    if trust_dir is not None:
        return Path(trust_dir)

    return settings.trust_dir()


def _entry_dir(store: Path, key: str) -> Path:
    return store / hashlib.sha256(key.encode()).hexdigest()[:32]


def trusted(location: str | Path, *, trust_dir: Path | None = None) -> TrustEntry | None:
    """The trust entry of ``location``, or None when no root is pinned for it."""
    key = location_key(location)
    d = _entry_dir(_store_dir(trust_dir), key)
    if not (d / "root.json").is_file() or not (d / "trust.json").is_file():
        return None
    try:
        recorded = load_strict(d / "trust.json").get("location")
    except Exception:  # noqa: BLE001 - a damaged record is the same as none: ask the user to re-pin
        return None
    return TrustEntry(key, d) if recorded == key else None


def check_root_document(data: bytes, where: str) -> dict[str, Any]:
    """Cheap shape check of root metadata before pinning (the signatures are checked on first use)."""
    if len(data) > MAX_ROOT_BYTES:
        raise IndexTrustError(f"{where}: larger than {MAX_ROOT_BYTES} bytes; not a root metadata file")
    doc = loads_strict(data, where)
    signed = doc.get("signed") if isinstance(doc, dict) else None
    if not isinstance(signed, dict) or signed.get("_type") != "root" or not isinstance(doc.get("signatures"), list):
        raise IndexTrustError(f"{where}: not TUF root metadata (expected {{\"signed\": {{\"_type\": \"root\", …}}, "
                              "\"signatures\": […]}})")
    return doc


def pin_root(location: str | Path, root: bytes, *, trust_dir: Path | None = None) -> TrustEntry:
    """Trust ``root`` for ``location`` from now on; a different root than before starts over."""
    key = location_key(location)
    check_root_document(root, f"root for {key}")
    d = _entry_dir(_store_dir(trust_dir), key)
    current = trusted(key, trust_dir=trust_dir)
    entry = TrustEntry(key, d)
    if current is not None and current.root_bytes() == root:
        return entry
    d.mkdir(parents=True, exist_ok=True)
    with entry.lock():
        if entry.metadata_dir.exists():
            shutil.rmtree(entry.metadata_dir)  # metadata trusted under another root means nothing now
        atomic_write_bytes(d / "root.json", root)
        atomic_write_bytes(d / "trust.json", dumps_pretty({"location": key}).encode())
    return entry


def unpin(location: str | Path, *, trust_dir: Path | None = None) -> bool:
    """Forget the pinned root and trusted metadata of ``location``; False when none was pinned."""
    entry = trusted(location, trust_dir=trust_dir)
    if entry is None:
        return False
    with entry.lock():
        (entry.directory / "trust.json").unlink(missing_ok=True)
        entry.root_path.unlink(missing_ok=True)
        if entry.metadata_dir.exists():
            shutil.rmtree(entry.metadata_dir)
    return True


def list_trusted(*, trust_dir: Path | None = None) -> list[TrustEntry]:
    store = _store_dir(trust_dir)
    out = []
    for d in sorted(store.glob("*/trust.json")) if store.is_dir() else ():
        try:
            loc = load_strict(d).get("location")
        except Exception:  # noqa: BLE001 - skip damaged records in a listing
            continue
        entry = trusted(loc, trust_dir=trust_dir) if isinstance(loc, str) else None
        if entry is not None:
            out.append(entry)
    return out


def bundled_root() -> bytes:
    """The bundled index's first root, checked against the sha256 pinned in this package."""
    path = resources.bundled_index_dir() / BUNDLED_ROOT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: the bundled index's root is missing; reinstall adapterhub") from None
    if hashlib.sha256(data).hexdigest() != BUNDLED_ROOT_SHA256:
        raise IndexTrustError(f"{path} is not the root pinned in this package (sha256 {BUNDLED_ROOT_SHA256[:16]}…)",
                              hint="reinstall adapterhub")
    return data


def authenticate(backend: Any, location: str | Path, *, trust_dir: Path | None = None) -> Any:
    """``backend`` itself when ``location`` has no pinned root, else a backend that verifies every read."""
    entry = trusted(location, trust_dir=trust_dir)
    if entry is None:
        if settings.require_signed_index():
            raise IndexTrustError(f"{location_key(location)}: no pinned root, and ADAPTERHUB_REQUIRE_SIGNED_INDEX "
                                  "is set", hint="pin its root with `adapterhub index trust LOCATION --root root.json`")
        return backend
    from .tuf_client import VerifiedBackend  # deferred: CLI import cost (python-tuf, cryptography)

    return VerifiedBackend(backend, entry)
