"""``adapterhub sign`` / ``package --sign``: an OMS v1.0 signature (``model.sig``) over a packaged adapter.

The signature covers exactly the manifest's files and ``adapterhub.json`` (see
``adapterhub/store/signatures.py`` for the format and why the signed manifest carries no ``sources``).
To sign exactly those files, whatever else lies in the directory (editor files, ``.cache``), they are
hard-linked into a private staging directory and that is what ``model_signing`` hashes and signs; the
result is checked to list exactly the release's files before it replaces ``model.sig``. Both offline
OMS methods are supported: an ECDSA private key, or a key with its certificate and chain.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PublishError, SignatureError
from ..fileio import atomic_write_bytes
from ..manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME, Manifest, load_manifest
from ..manifest.validate import validate_path
from ..paths import safe_join

PASSWORD_ENV = "ADAPTERHUB_SIGNING_KEY_PASSWORD"
KEY_HINT = ("a signing key is an ECDSA P-256/P-384/P-521 private key in PEM, e.g. "
            "`openssl ecparam -name prime256v1 -genkey -noout -out key.pem` (public key: "
            "`openssl ec -in key.pem -pubout -out key.pub`)")


@dataclass(frozen=True)
class SigningKey:
    """How to sign: an ECDSA private key (PEM), optionally with its certificate and CA chain."""

    private_key: Path
    certificate: Path | None = None
    certificate_chain: tuple[Path, ...] = ()
    password: str | None = None
    """For an encrypted key (the CLI reads ``ADAPTERHUB_SIGNING_KEY_PASSWORD``)."""

    def signing_config(self) -> Any:
        """A ``model_signing.signing.Config`` with this key loaded (fails fast on a bad key)."""
        from ..store.signatures import hashing_config, model_signing  # deferred: CLI import cost

        ms = model_signing()
        for path in (self.private_key, self.certificate, *self.certificate_chain):
            if path is not None and not Path(path).is_file():
                raise SignatureError(f"{path}: no such file", hint=KEY_HINT)
        if self.certificate_chain and self.certificate is None:
            raise SignatureError("a certificate chain was given without the signing certificate",
                                 hint="pass --cert CERT.pem with --cert-chain")
        config = ms.signing.Config()
        try:
            if self.certificate is None:
                config.use_elliptic_key_signer(private_key=self.private_key, password=self._password())
            else:
                if self.password is not None:
                    raise SignatureError("the certificate method needs an unencrypted private key "
                                         "(model_signing reads it without a password)")
                config.use_certificate_signer(private_key=self.private_key, signing_certificate=self.certificate,
                                              certificate_chain=list(self.certificate_chain))
        except SignatureError:
            raise
        except TypeError as exc:  # cryptography: password missing, or given for an unencrypted key
            raise SignatureError(f"{self.private_key}: {exc}", hint=f"set {PASSWORD_ENV} for an encrypted key") from None
        except (ValueError, AttributeError, OSError) as exc:  # not PEM, unsupported curve, not an EC key
            raise SignatureError(f"{self.private_key}: cannot sign with this key: {exc or type(exc).__name__}",
                                 hint=KEY_HINT) from None
        return config.set_hashing_config(hashing_config())

    def _password(self) -> bytes | None:
        return None if self.password is None else self.password.encode()


@dataclass
class SignResult:
    directory: Path
    signature: Path
    manifest: Manifest
    signed_files: list[str]
    """Every path the signature lists (the manifest's files and adapterhub.json), sorted."""


def release_for_signing(directory: Path) -> Manifest:
    """The manifest of a packaged directory, checked for signing: files as listed, no ``sources``."""
    report = validate_path(directory)
    if not report.ok:
        raise PublishError(f"{directory} does not validate, nothing was signed: {'; '.join(report.problems[:8])}",
                           hint="run `adapterhub package` first")
    if not directory.is_dir():
        raise PublishError(f"{directory}: signing takes an adapter directory, not a manifest file")
    manifest = load_manifest(directory)
    check_signable(directory, manifest)
    return manifest


def check_signable(directory: Path, manifest: Manifest) -> None:
    """Refuse a manifest that lists ``model.sig`` or carries ``sources`` (see the store's signatures module)."""
    if any(f.path == SIGNATURE_FILENAME for f in manifest.files):
        raise PublishError(f"{directory}: the manifest lists {SIGNATURE_FILENAME}, the name reserved for the "
                           "adapter's signature", hint="rename that file")
    if manifest.sources:
        raise PublishError(f"{directory}: a signed manifest carries no `sources` (publishing adds where the "
                           "release lives; a signature stays valid when mirrors change)",
                           hint="remove `sources` from adapterhub.json; put mirrors in the index config "
                           "(artifacts.mirrors)")


def sign_package(directory: str | Path, key: SigningKey) -> SignResult:
    """Write ``directory/model.sig``: an OMS signature over the manifest's files and ``adapterhub.json``.

    Nothing is written when the key or the directory is bad; an existing ``model.sig`` is replaced
    atomically. ``adapterhub.json`` is rewritten in its canonical form (the bytes ``pull`` puts back into
    the cache) if it is not already.
    """
    from ..store.signatures import (  # deferred: CLI import cost (store, registry)
        check_coverage,
        link_or_copy,
        manifest_bytes,
        signed_manifest,
        signed_resources,
    )

    d = Path(directory)
    manifest = release_for_signing(d)
    config = key.signing_config()
    signed = signed_manifest(manifest)
    body = manifest_bytes(signed)
    stage = Path(tempfile.mkdtemp(prefix=".adapterhub-sign-", dir=d))
    try:
        model = stage / manifest.name  # the statement's subject is named after the adapter
        model.mkdir()
        for entry in signed.files:
            target = safe_join(model, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(safe_join(d, entry.path), target)
        (model / MANIFEST_FILENAME).write_bytes(body)
        out = stage / SIGNATURE_FILENAME
        try:
            config.sign(model, out)
        except Exception as exc:  # model_signing's errors are plain ValueError/OSError
            raise SignatureError(f"{d}: signing failed: {exc}") from None
        data = out.read_bytes()
        check_coverage(data, manifest, str(out))
        if (d / MANIFEST_FILENAME).read_bytes() != body:
            atomic_write_bytes(d / MANIFEST_FILENAME, body)  # the canonical bytes that were signed
        atomic_write_bytes(d / SIGNATURE_FILENAME, data)  # our writer: modes follow the umask
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return SignResult(d, d / SIGNATURE_FILENAME, manifest, sorted(signed_resources(data, SIGNATURE_FILENAME)))


def with_signature(directory: Path, manifest: Manifest) -> Manifest:
    """``manifest`` plus the ``model.sig`` entry when ``directory`` is signed (what publishing uploads).

    The signature must list exactly this directory's release; a stale one (files changed after
    signing) is refused before anything is uploaded. Authenticity is the puller's check, not ours.
    """
    from ..store.signatures import check_coverage, signature_entry  # deferred: CLI import cost

    sig = directory / SIGNATURE_FILENAME
    if not sig.is_file():
        return manifest
    check_signable(directory, manifest)
    data = sig.read_bytes()
    check_coverage(data, manifest, str(sig))
    return dataclasses.replace(manifest, files=(*manifest.files, signature_entry(data)))


__all__ = ["PASSWORD_ENV", "SignResult", "SigningKey", "check_signable", "release_for_signing", "sign_package",
           "with_signature"]
