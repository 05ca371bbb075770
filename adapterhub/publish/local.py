"""``adapterhub publish DIR --to PATH``: a registry on a plain directory, for air-gapped teams.

PATH becomes (or already is) a registry index whose ``mirror/`` holds every file by its sha256. The
index entry's manifest lists a ``bundled`` source, which for a local index means that ``mirror/``, so
``adapterhub pull NAME --index PATH`` needs no network. The directory can be copied, rsync'd or
served by any static file server as it is. Blobs go in first (each written to a temp file, hashed,
checked, renamed); the index line is added last, so a failure leaves at most unreferenced blobs.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, PublishError
from ..fileio import create_temp_file, make_read_only, sha256_file
from ..manifest import BundledSource, Manifest
from .release import indexed_release, load_release, with_sources
from .sign import with_signature

CHUNK = 1 << 20


@dataclass
class LocalPublishResult:
    root: Path
    manifest: Manifest
    entry: dict[str, Any]
    copied: list[str] = field(default_factory=list)
    already_published: bool = False
    dry_run: bool = False


def _put_blob(mirror: Path, src: Path, sha256: str) -> bool:
    """Copy ``src`` into ``mirror/<sha256>`` verifying it; False when an intact blob was already there."""
    final = mirror / sha256
    if final.is_file():
        if sha256_file(final) == sha256:
            return False
        final.unlink()  # a corrupted blob: replace it
    fd, tmp = create_temp_file(mirror, prefix=f".{sha256[:16]}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, src.open("rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"{src} changed while it was copied (sha256 {digest.hexdigest()}, expected {sha256})")
        make_read_only(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def _ensure_index(root: Path) -> None:
    from ..registry.layout import CONFIG_FILE  # deferred: CLI import cost (store, registry)
    from ..registry.writer import init_index  # deferred: CLI import cost (store, registry)

    if (root / CONFIG_FILE).is_file():
        return
    if root.exists() and any(root.iterdir()):
        raise PublishError(f"{root} exists, is not empty and is not a registry index",
                           hint="pass an empty or new directory, or an index made by `adapterhub index init`")
    name = re.sub(r"[^a-z0-9._-]+", "-", root.resolve().name.lower()).strip("-._")[:64] or "local-registry"
    init_index(root, name, "A local adapterhub registry (adapterhub publish --to); files in mirror/<sha256>.")


def publish_local(directory: str | Path, to: str | Path, *, dry_run: bool = False,
                  keys: str | Path | None = None) -> LocalPublishResult:
    """Publish the packaged adapter in ``directory`` into the directory registry ``to``.

    A signed registry is re-signed after the entry is added, with ``keys`` (or ``ADAPTERHUB_INDEX_KEYS``);
    without usable keys a signed registry is refused before anything is copied. ``keys`` on an unsigned
    registry signs it for the first time.
    """
    from ..registry.entries import entry_for  # deferred: CLI import cost (store, registry)
    from ..registry.signing import sign_index, signing_keyring  # deferred: CLI import cost (store, registry)
    from ..registry.writer import add_release  # deferred: CLI import cost (store, registry)

    d, root = Path(directory), Path(to)
    manifest = load_release(d)
    keep = tuple(s for s in manifest.sources or () if not isinstance(s, BundledSource))
    final = with_sources(with_signature(d, manifest), BundledSource(), keep)  # + model.sig when signed
    existing = indexed_release(root, final) if (root / "config.json").is_file() else None
    keyring = signing_keyring(root, keys) if existing is None else None
    if dry_run:
        return LocalPublishResult(root, final, entry_for(final).to_json(), [f.path for f in final.files],
                                  existing is not None, True)
    _ensure_index(root)
    mirror = root / "mirror"
    mirror.mkdir(exist_ok=True)
    copied = [f.path for f in final.files if _put_blob(mirror, d / f.path, f.sha256)]  # also repairs blobs
    if existing is not None:
        return LocalPublishResult(root, final, existing.to_json(), copied, already_published=True)
    entry = add_release(root, final)
    if keyring is not None:
        sign_index(root, keyring)
    return LocalPublishResult(root, final, entry.to_json(), copied)
