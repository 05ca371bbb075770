"""``adapterhub package``: make an adapter directory ready to publish.

In order: load the manifest; convert pickle weights it lists to safetensors (only through PyTorch's
weights-only loader, and only after the file matched the sha256 the manifest recorded for it);
re-hash every listed file; write the model card (README.md); write the manifest; then check the
whole directory as ``adapterhub validate`` does; with a key, sign it (``model.sig``, see ``sign.py``).
A ``model.sig`` from an earlier signing stays only while it still covers the packaged release.
Everything new is written to a staging directory first, so any refusal leaves the directory as it was;
at the end the new files replace their namesakes, the manifest that names them last, and old pickle
files are removed only after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IntegrityError, PublishError, SignatureError
from ..fileio import atomic_write_bytes, atomic_write_text, sha256_file, staged_directory
from ..manifest import (
    MANIFEST_FILENAME,
    SIGNATURE_FILENAME,
    Manifest,
    load_manifest,
    manifest_to_dict,
    parse_manifest,
    write_manifest,
)
from ..manifest.validate import validate_path
from .card import merge_card
from .files import CARD_FILE, file_entries, guess_role, payload_files
from .sign import SigningKey, SignResult, check_signable, sign_package

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
PICKLE_RENAMES = {"pytorch_adapter.bin": "adapter.safetensors", "pytorch_model_head.bin": "head.safetensors",
                  "adapter_model.bin": "adapter_model.safetensors"}


@dataclass
class PackageResult:
    directory: Path
    manifest: Manifest
    converted: dict[str, str] = field(default_factory=dict)
    """pickle path -> safetensors path, for each converted file."""
    signed: SignResult | None = None
    """The signature written, when packaging was asked to sign."""
    dropped_signature: bool = False
    """An earlier ``model.sig`` no longer covered the release and was removed."""


def _safetensors_name(path: str) -> str:
    head, _, name = path.rpartition("/")
    new = PICKLE_RENAMES.get(name) or name.rsplit(".", 1)[0] + ".safetensors"
    return f"{head}/{new}" if head else new


def _convert(directory: Path, stage: Path, entry: dict, taken: set[str]) -> str:
    from ..store.convert import pickle_to_safetensors  # deferred: CLI import cost (store, registry)
    from ..store.safetensors_check import check_safetensors  # deferred: CLI import cost (store, registry)

    src = directory / entry["path"]
    digest = sha256_file(src)
    if digest != entry["sha256"]:
        raise IntegrityError(f"{src}: sha256 {digest} is not the {entry['sha256']} the manifest recorded; "
                             "refusing to unpickle a file that changed", hint="re-run `adapterhub init` if you replaced it")
    target = _safetensors_name(entry["path"])
    if target in taken or (directory / target).exists():
        raise PublishError(f"{src}: would convert to {target}, which already exists",
                           hint="remove one of the two weight files")
    atomic_write_bytes(stage / target, pickle_to_safetensors(src.read_bytes(), str(src)))
    check_safetensors(stage / target)
    return target


def _entries(directory: Path, stage: Path, paths: list[str], roles: dict[str, str]) -> list[dict]:
    """Manifest file entries, each hashed where it is now: written in this run (staged) or already there."""
    return [file_entries(stage if (stage / p).is_file() else directory, [p], roles)[0] for p in paths]


def package_adapter(directory: str | Path, *, index_hint: str | None = None, card: bool = True,
                    sign: SigningKey | None = None) -> PackageResult:
    """Validate, convert, hash and write the model card of the adapter in ``directory``; sign it with ``sign``."""
    d = Path(directory)
    manifest = load_manifest(d)
    doc = manifest_to_dict(manifest)
    listed = {f["path"] for f in doc["files"]}
    extra = [p for p in payload_files(d) if p not in listed and p != CARD_FILE]
    if extra:
        raise PublishError(f"{d}: {len(extra)} file(s) are not in the manifest: {', '.join(extra[:10])}",
                           hint="delete them, or run `adapterhub init` again to list them")
    if SIGNATURE_FILENAME in listed:
        raise PublishError(f"{d}: the manifest lists {SIGNATURE_FILENAME}, the name reserved for the adapter's "
                           "signature", hint="rename that file")
    if sign is not None:
        check_signable(d, manifest)
        sign.signing_config()  # a bad key fails here, before anything is rewritten
    converted: dict[str, str] = {}
    pickles = tuple(e["path"] for e in doc["files"] if e["path"].lower().endswith(PICKLE_SUFFIXES))
    with staged_directory(d, last=(MANIFEST_FILENAME,), remove=pickles) as stage:  # d unchanged on failure
        roles: dict[str, str] = {}
        paths: list[str] = []
        for entry in doc["files"]:
            path = entry["path"]
            if path == CARD_FILE:
                continue
            if not (d / path).is_file():
                raise PublishError(f"{d / path}: listed in the manifest but missing")
            if path in pickles:
                new = _convert(d, stage, entry, set(paths) | listed)
                converted[path] = new
                roles[new] = entry["role"] if entry.get("role") not in (None, "other") else guess_role(new)
                paths.append(new)
            else:
                roles[path] = entry.get("role") or guess_role(path)
                paths.append(path)
        doc["files"] = _entries(d, stage, paths, roles)
        if card:
            without_card = parse_manifest(doc, str(d / MANIFEST_FILENAME))
            existing = (d / CARD_FILE).read_text(encoding="utf-8") if (d / CARD_FILE).is_file() else ""
            atomic_write_text(stage / CARD_FILE, merge_card(existing, without_card, index_hint=index_hint))
        if card or CARD_FILE in listed:
            doc["files"] += _entries(d, stage, [CARD_FILE], {CARD_FILE: "card"})
        final = parse_manifest(doc, str(d / MANIFEST_FILENAME))
        write_manifest(final, stage / MANIFEST_FILENAME)
    report = validate_path(d)
    if not report.ok:
        raise PublishError(f"{d}: the packaged directory does not validate: {'; '.join(report.problems[:8])}")
    if sign is None:
        return PackageResult(d, final, converted, dropped_signature=_drop_stale_signature(d, final))

    signed = sign_package(d, sign)
    return PackageResult(d, signed.manifest, converted, signed)


def _drop_stale_signature(directory: Path, manifest: Manifest) -> bool:
    """Remove ``model.sig`` when it no longer lists exactly the packaged release; True when removed."""
    from ..store.signatures import check_coverage  # deferred: CLI import cost (store, registry)

    sig = directory / SIGNATURE_FILENAME
    if not sig.is_file():
        return False
    try:
        check_coverage(sig.read_bytes(), manifest, str(sig))
        return False
    except SignatureError:
        sig.unlink()
        return True
