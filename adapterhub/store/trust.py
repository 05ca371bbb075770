"""Who may sign adapters: the trusted signers ``pull`` checks OMS signatures against.

A signer is an ECDSA public key (the OMS "key" method) or a CA certificate chain (the "certificate"
method: any signing certificate that chains to it is accepted). They come from the user (``pull
--trust-key`` / ``--trust-cert-chain``, ``ADAPTERHUB_TRUST_KEYS`` / ``ADAPTERHUB_TRUST_CERT_CHAINS``) or
from the index config's ``adapter_signers``. An index that names its signers is only as trustworthy as
whoever serves the index, so those are used only when the user opts in (``--trust-index-signers``);
:func:`signers_from_index_config` is the one place that reads them, for an authenticated index to
reuse. No signers at all means no signature is required (and nothing heavy is imported).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from .. import settings
from ..errors import IndexFormatError, NotFoundError, SignatureError
from ..records import frozen_record

MAX_PEM_BYTES = 1 << 20
SignerKind = Literal["key", "certificate"]


@frozen_record
class TrustedSigner:
    """One trusted signer: its kind, its PEM bytes and where it came from (for messages)."""

    kind: SignerKind
    pem: bytes
    label: str


def _read_pem(path: Path, kind: SignerKind) -> TrustedSigner:
    what = "public key" if kind == "key" else "certificate chain"
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: trusted {what} file not found") from None
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the trusted {what}: {exc.strerror or exc}") from None
    marker = b"-----BEGIN PUBLIC KEY-----" if kind == "key" else b"-----BEGIN CERTIFICATE-----"
    if len(data) > MAX_PEM_BYTES or marker not in data:
        raise SignatureError(f"{path}: not a PEM {what} (expected a {marker.decode()} block)",
                             hint="pass the signer's public key (key.pub), not the private key" if kind == "key"
                             else "pass the CA certificate(s) in PEM form")
    return TrustedSigner(kind, data, str(path))


def signers_from_files(keys: Iterable[str | Path] = (), cert_chains: Iterable[str | Path] = ()) -> tuple[TrustedSigner, ...]:
    """Trusted signers from PEM files: ECDSA public keys and CA certificate chains."""
    return tuple([_read_pem(Path(p), "key") for p in keys] + [_read_pem(Path(p), "certificate") for p in cert_chains])


def signers_from_index_config(config: dict[str, Any] | None, where: str) -> tuple[TrustedSigner, ...]:
    """The signers an index config names (``adapter_signers``), whether or not they are trusted.

    Callers decide trust: ``pull`` uses them only when the user opted in. ``where`` names the index.
    """
    raw = (config or {}).get("adapter_signers") or []
    out = []
    for i, item in enumerate(raw):
        name = item.get("name", f"#{i}") if isinstance(item, dict) else f"#{i}"
        label = f"signer {name!r} of the index at {where}"
        if not isinstance(item, dict) or ("public_key" in item) == ("certificate_chain" in item):
            raise IndexFormatError(f"{where}: adapter_signers[{i}] needs exactly one of public_key or "
                                   "certificate_chain")
        kind: SignerKind = "key" if "public_key" in item else "certificate"
        pem = str(item["public_key" if kind == "key" else "certificate_chain"]).encode()
        out.append(TrustedSigner(kind, pem, label))
    return tuple(out)


@frozen_record
class Trust:
    """What ``pull`` requires: signatures by one of ``signers`` (and, opted in, the index's signers)."""

    signers: tuple[TrustedSigner, ...] = ()
    index_signers: bool = False
    """Also trust the signers named by the index config (``adapter_signers``)."""

    @classmethod
    def from_files(cls, keys: Iterable[str | Path] = (), cert_chains: Iterable[str | Path] = (), *,
                   index_signers: bool = False) -> Trust:
        return cls(signers_from_files(keys, cert_chains), index_signers)

    @classmethod
    def from_env(cls) -> Trust:
        """``ADAPTERHUB_TRUST_KEYS``, ``ADAPTERHUB_TRUST_CERT_CHAINS``, ``ADAPTERHUB_TRUST_INDEX_SIGNERS``."""
        return cls.from_files(settings.trust_key_files(), settings.trust_cert_chain_files(),
                              index_signers=settings.trust_index_signers())

    def resolve(self, index_config: dict[str, Any] | None, where: str | None) -> tuple[TrustedSigner, ...]:
        """The concrete signers for a pull from the index at ``where`` (empty: no signature required)."""
        if not self.index_signers:
            return self.signers
        named = signers_from_index_config(index_config, where or "<no index>")
        if not named and not self.signers:
            raise SignatureError(f"index signers are trusted, but the index at {where or '<none>'} names no "
                                 "adapter_signers, so no signature could be checked",
                                 hint="pass --trust-key PUB.pem, or use an index whose config lists adapter_signers")
        return self.signers + named


__all__ = ["TrustedSigner", "Trust", "signers_from_files", "signers_from_index_config"]
