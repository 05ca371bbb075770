"""OpenSSF Model Signing (OMS v1.0) signatures of adapter releases: what is signed, and checking it.

A signed adapter directory holds ``model.sig`` (OMS's default name): a Sigstore bundle whose DSSE
envelope carries an in-toto statement listing, with its sha256, every file of the manifest **and**
``adapterhub.json`` itself, so the adapter's facts (method config, base model, head) are signed too.
The signature records ``model.sig`` and the cache's ``.adapterhub-view.json`` as ignored paths, so any
OMS verifier (``model_signing verify key DIR --signature DIR/model.sig --public_key KEY``) accepts a
packaged directory and a pulled cache directory alike.

The signed manifest has no ``sources``: where a release lives is not what it is, and publishing adds
the source (the Hub commit cannot name itself inside its own files). The published manifest is the
signed one plus ``sources`` plus a ``model.sig`` file entry, so ``pull`` fetches the signature like any
other file (sha256-checked, cached, mirrored) and writes the signed manifest back into the view.

``model_signing`` (the ``sign`` extra) is imported only here, only when a signature is made or checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import AdapterHubError, OptionalDependencyError, SignatureError, SignatureMismatchError
from ..jsonio import dumps_pretty, loads_strict
from ..manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME, FileEntry, Manifest, manifest_to_dict
from ..paths import safe_join
from .layout import VIEW_MARKER
from .trust import TrustedSigner
from .views import BlobMissingError

IGNORED_PATHS = (SIGNATURE_FILENAME, VIEW_MARKER)
"""Recorded in every signature we make, so verifiers skip the signature itself and our cache record."""
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_SIGNATURE_BYTES = 8 << 20
INSTALL_HINT = "pip install 'adapterhub[sign]'"


def model_signing() -> Any:
    """The ``model_signing`` package (imported on first use: it costs ~0.7 s), or a typed error."""
    try:
        import model_signing as ms
        import model_signing.hashing
        import model_signing.signing
        import model_signing.verifying  # noqa: F401
    except ImportError as exc:
        raise OptionalDependencyError(f"adapter signatures need the `model-signing` package ({exc})",
                                      hint=f"install the signing extra: {INSTALL_HINT}") from None
    return ms


def hashing_config() -> Any:
    """The OMS hashing we sign with: whole files, sha256, no symlinks, ``IGNORED_PATHS`` recorded."""
    ms = model_signing()
    return ms.hashing.Config().set_ignored_paths(paths=list(IGNORED_PATHS), ignore_git_paths=True)


# -- what is signed ---------------------------------------------------------------------------------


def is_signed(manifest: Manifest) -> bool:
    """Whether a (published) manifest lists a signature file."""
    return any(f.path == SIGNATURE_FILENAME for f in manifest.files)


def signed_manifest(manifest: Manifest) -> Manifest:
    """The manifest a signature covers: no ``sources``, no signature entry (see the module docstring)."""
    files = tuple(f for f in manifest.files if f.path != SIGNATURE_FILENAME)
    return dataclasses.replace(manifest, files=files, sources=None)


def manifest_bytes(manifest: Manifest) -> bytes:
    """The exact ``adapterhub.json`` bytes of ``manifest`` (what ``write_manifest`` writes)."""
    return dumps_pretty(manifest_to_dict(manifest)).encode()


def expected_resources(manifest: Manifest) -> dict[str, str]:
    """``path -> sha256`` a signature of the signed form of ``manifest`` must list, nothing more or less."""
    signed = signed_manifest(manifest)
    out = {f.path: f.sha256 for f in signed.files}
    out[MANIFEST_FILENAME] = hashlib.sha256(manifest_bytes(signed)).hexdigest()
    return out


def signature_entry(data: bytes) -> FileEntry:
    """The manifest ``files`` entry of a signature file with content ``data``."""
    return FileEntry(SIGNATURE_FILENAME, len(data), hashlib.sha256(data).hexdigest(), "other")


def signed_resources(data: bytes, where: str) -> dict[str, str]:
    """``path -> sha256`` listed by an OMS v1.0 signature (parsed only; authenticity is checked elsewhere)."""
    from base64 import b64decode  # here: a warm pull's signature gate never decodes a signature

    def bad(why: str) -> SignatureError:
        return SignatureError(f"{where}: not an OMS v1.0 signature of whole files with sha256: {why}",
                              hint="sign it again with `adapterhub sign`")

    try:
        bundle = loads_strict(data, where)
    except AdapterHubError as exc:
        raise bad(exc.message) from None
    envelope = bundle.get("dsseEnvelope") if isinstance(bundle, dict) else None
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        raise bad("no in-toto DSSE envelope")
    try:
        payload = b64decode(str(envelope.get("payload", "")), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        raise bad("the payload is not base64") from None
    try:
        statement = loads_strict(payload, f"{where} (payload)")
    except AdapterHubError as exc:
        raise bad(exc.message) from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE \
            or statement.get("predicateType") != PREDICATE_TYPE:
        raise bad(f"predicate type {statement.get('predicateType') if isinstance(statement, dict) else None!r}")
    predicate = statement.get("predicate")
    serialization = predicate.get("serialization") if isinstance(predicate, dict) else None
    if not isinstance(serialization, dict) or serialization.get("method") != "files" \
            or serialization.get("hash_type") != "sha256":
        raise bad(f"serialization {serialization!r}")
    out: dict[str, str] = {}
    for item in predicate.get("resources") or []:
        if not isinstance(item, dict) or item.get("algorithm") != "sha256" or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("digest"), str) or item["name"] in out:
            raise bad(f"resource {item!r}")
        out[item["name"]] = item["digest"]
    return out


def check_coverage(data: bytes, manifest: Manifest, where: str) -> None:
    """Refuse a signature that does not list exactly the signed files of ``manifest`` with their sha256.

    OMS verification alone only proves that the files it lists match; a signer's recorded ignore list
    could leave a weights file out. This makes every file of the release signed.
    """
    got = signed_resources(data, where)
    want = expected_resources(manifest)
    problems = [f"{p} is not signed" for p in sorted(want.keys() - got.keys())]
    problems += [f"{p} is signed but not part of the release" for p in sorted(got.keys() - want.keys())]
    problems += [f"{p} was signed with another sha256" for p in sorted(want.keys() & got.keys()) if got[p] != want[p]]
    if problems:
        raise SignatureError(f"{where} does not cover {manifest.name} {manifest.version} as released: "
                             + "; ".join(problems[:10]), hint="sign the packaged directory again (`adapterhub sign`)")


# -- checking a directory ---------------------------------------------------------------------------


def _verifier(ms: Any, signer: TrustedSigner, key_file: Path) -> Any:
    # Our hashing, not one guessed from the signature: a view's record is skipped even when another
    # OMS tool made the signature (check_coverage still demands whole-file sha256 of every file).
    config = ms.verifying.Config().set_hashing_config(hashing_config())
    if signer.kind == "key":
        return config.use_elliptic_key_verifier(public_key=key_file)
    return config.use_certificate_verifier(certificate_chain=[key_file])  # never empty: empty = the OS roots


def _why(exc: BaseException) -> tuple[bool, str]:
    """``(signed_by_this_signer, reason)`` for an exception of ``model_signing``'s verifier."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if text.startswith("Signature mismatch"):
        return True, "the files do not match the signature: " + text.partition(":")[2].strip()
    if text.startswith("Key mismatch"):
        return False, "signed by another key"
    if type(exc).__name__ == "InvalidSignature":
        return False, "the signature does not verify with this key"
    if type(exc).__name__.startswith("X509"):
        return False, f"the signing certificate does not chain to this CA ({text[:200]})"
    return False, text[:300]


def verify_directory(directory: str | Path, manifest: Manifest, signers: Sequence[TrustedSigner], *,
                     signature: str | Path | None = None, where: str | None = None) -> TrustedSigner:
    """Check the OMS signature of ``directory`` with ``model_signing`` and return the signer that verified it.

    ``manifest`` says what the release is (the signature must list exactly its files and the signed
    ``adapterhub.json``); ``signature`` defaults to ``directory/model.sig``; ``where`` names it in
    messages (default: its path). Raises :class:`SignatureError` when no trusted signer verifies it or
    the files do not match.
    """
    d = Path(directory)
    sig = Path(signature) if signature is not None else d / SIGNATURE_FILENAME
    where = where or str(sig)
    if not signers:
        raise SignatureError(f"{where}: no trusted signer to check it against",
                             hint="pass --trust-key PUB.pem or --trust-cert-chain CA.pem")
    try:
        with open(sig, "rb") as fh:
            data = fh.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        raise SignatureError(f"{where}: {manifest.name} {manifest.version} is not signed (no {SIGNATURE_FILENAME})",
                             hint="sign it with `adapterhub sign DIR --key KEY.pem`, or drop the trust options"
                             ) from None
    if len(data) > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"{where}: larger than {MAX_SIGNATURE_BYTES} bytes; not an adapter signature")
    ms = model_signing()
    reasons = []
    import io
    import tempfile  # here: the gate of every warm pull is in this module, and it needs neither

    with tempfile.TemporaryDirectory(prefix="adapterhub-verify-") as tmp:
        frozen = Path(tmp) / SIGNATURE_FILENAME  # checked and parsed from the same bytes
        frozen.write_bytes(data)
        for i, signer in enumerate(signers):
            key_file = Path(tmp) / f"signer-{i}.pem"
            key_file.write_bytes(signer.pem)
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # it prints format warnings to stdout
                    _verifier(ms, signer, key_file).verify(d, frozen)
            except Exception as exc:  # model_signing raises ValueError, cryptography and OpenSSL errors
                mine, why = _why(exc)
                if mine:
                    raise SignatureMismatchError(f"{where}: {why}", hint=f"signed by {signer.label}, but the "
                                                 "release differs from what was signed: it was changed after "
                                                 "signing") from None
                reasons.append(f"[{signer.label}] {why}")
                continue
            check_coverage(data, manifest, where)
            return signer
    raise SignatureError(f"{where}: not made by a trusted signer: " + "; ".join(reasons),
                         hint="check --trust-key / --trust-cert-chain (the publisher's public key or CA), or ask "
                         "the publisher how the release was signed")


# -- the pull's gate --------------------------------------------------------------------------------


class SignatureGate:
    """What ``pull`` does about signatures for one manifest (see ``store/pull.py``'s marked calls).

    Without trusted signers it only shapes the view of a signed release (signed ``adapterhub.json``,
    ``model.sig`` beside it) and imports nothing. With them, an unsigned release is refused before any
    download, and a view is published only after its exact contents verified.
    """

    def __init__(self, manifest: Manifest, signers: Sequence[TrustedSigner]) -> None:
        self.manifest = manifest
        self.signers = tuple(signers)

    @property
    def required(self) -> bool:
        return bool(self.signers)

    @property
    def where(self) -> str:
        return f"{self.manifest.name} {self.manifest.version} ({SIGNATURE_FILENAME})"

    def check_signed(self) -> None:
        """Refuse, before any byte moves, an unsigned release when signatures are required."""
        if self.required and not is_signed(self.manifest):
            m = self.manifest
            raise SignatureError(f"{m.name} {m.version} is not signed, and signatures are required "
                                 f"(trusted: {', '.join(s.label for s in self.signers)})",
                                 hint="ask the publisher to sign it (`adapterhub package --sign`), or drop the "
                                 "trust options to use it unsigned")

    def view_is_trusted(self, view: Path) -> bool:
        """A warm view passes when nothing is required or it verifies as it is on disk; False when its
        files differ from the signed ones (rebuild it from the blobs); raises when the signature is not
        a trusted signer's (rebuilding would not change that)."""
        if not self.required:
            return True
        try:
            verify_directory(view, self.manifest, self.signers, where=self.where)
        except SignatureMismatchError:
            return False
        return True

    def view_manifest(self, stage_root: Path, blob_of: Any, files: Sequence[FileEntry]) -> Manifest:
        """The manifest to write into the view; when signatures are required, first verify the exact
        view contents in ``stage_root`` (links to the verified blobs + signed manifest), then remove it."""
        import shutil  # here: a warm pull never removes or copies trees (start-up cost)

        if not is_signed(self.manifest):
            return self.manifest
        signed = signed_manifest(self.manifest)
        if not self.required:
            return signed
        model = stage_root / self.manifest.name
        shutil.rmtree(stage_root, ignore_errors=True)
        try:
            model.mkdir(parents=True)
            for entry in files:
                target = safe_join(model, entry.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    link_or_copy(blob_of(entry.sha256), target)
                except FileNotFoundError:
                    raise BlobMissingError(entry.sha256) from None  # gc ran: the pull fetches it again
            (model / MANIFEST_FILENAME).write_bytes(manifest_bytes(signed))
            verify_directory(model, self.manifest, self.signers, where=self.where)
        finally:
            shutil.rmtree(stage_root, ignore_errors=True)
        return signed


def link_or_copy(src: Path, target: Path) -> None:
    """Hard-link ``src`` to ``target`` (copy where links are not possible)."""
    import shutil  # here: a warm pull never removes or copies trees (start-up cost)

    try:
        os.link(src, target)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        shutil.copyfile(src, target)


__all__ = ["IGNORED_PATHS", "SignatureGate", "check_coverage", "expected_resources", "hashing_config",
           "is_signed", "link_or_copy", "manifest_bytes", "model_signing", "signature_entry", "signed_manifest",
           "signed_resources", "verify_directory"]
