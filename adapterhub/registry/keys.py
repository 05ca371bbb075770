"""Signing keys of an index: a keyring directory holding one ed25519 private key per PEM file.

The file name says the role the key is made for: ``root.pem`` (more root keys: ``root-2.pem``, …),
``targets.pem``, ``snapshot.pem``, ``timestamp.pem``. Files are unencrypted PKCS#8 PEM written with mode
0600 and never overwritten, so a keyring must live somewhere only its owner reads (an offline disk for
the root keys). Which keys an index trusts is decided by its signed root metadata, not by file names:
a keyring merely offers signers, and :mod:`adapterhub.registry.signing` uses those the root lists.

securesystemslib (python-tuf's key library) does the cryptography; it is imported only here and only
when keys are used, so reading an index never pays for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, SigningKeyError

ROLES = ("root", "targets", "snapshot", "timestamp")
KEY_SUFFIX = ".pem"
_KEY_FILE = re.compile(r"^(?P<role>root|targets|snapshot|timestamp)(-[A-Za-z0-9_]+)?\.pem$")
MAX_KEY_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Keyring:
    """Signers by the role their file names give (see module docstring)."""

    signers: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    source: str = "<keyring>"

    def for_role(self, role: str) -> tuple[Any, ...]:
        return tuple(self.signers.get(role, ()))

    def keyids(self, role: str) -> list[str]:
        return [s.public_key.keyid for s in self.for_role(role)]

    def all_signers(self) -> list[Any]:
        """Every signer once (one key file may serve in several roles only if copied; ids dedupe it)."""
        seen: dict[str, Any] = {}
        for role in ROLES:
            for s in self.for_role(role):
                seen.setdefault(s.public_key.keyid, s)
        return list(seen.values())

    def overridden_by(self, other: Keyring) -> Keyring:
        """This keyring with every role that ``other`` has keys for replaced by ``other``'s keys."""
        merged = {role: self.for_role(role) for role in ROLES}
        merged.update({role: other.for_role(role) for role in ROLES if other.for_role(role)})
        return Keyring(merged, f"{self.source} + {other.source}")


def signer_from_pem(data: bytes, where: str) -> Any:
    """A securesystemslib signer for an unencrypted PKCS#8 PEM private key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        private_key = load_pem_private_key(data, password=None)
        return CryptoSigner(private_key)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{where}: not a usable unencrypted PKCS#8 PEM private key ({exc})",
                              hint="create keys with `adapterhub index keygen`") from None


def load_keyring(directory: str | Path) -> Keyring:
    """Every ``<role>[-<suffix>].pem`` file of ``directory``; other files are ignored."""
    d = Path(directory)
    if not d.is_dir():
        raise NotFoundError(f"{d}: keyring directory does not exist",
                            hint="create one with `adapterhub index keygen DIR`")
    signers: dict[str, list[Any]] = {role: [] for role in ROLES}
    for path in sorted(d.iterdir()):
        match = _KEY_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
        if len(data) > MAX_KEY_FILE_BYTES:
            raise SigningKeyError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")
        signers[match["role"]].append(signer_from_pem(data, str(path)))
    if not any(signers.values()):
        raise SigningKeyError(f"{d}: no key files (expected root.pem, targets.pem, snapshot.pem, timestamp.pem)",
                              hint="create them with `adapterhub index keygen DIR`")
    return Keyring({role: tuple(v) for role, v in signers.items()}, str(d))


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600; refuse to replace an existing key (that would lose it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} already exists; refusing to overwrite a key",
                              hint="choose a new keyring directory") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def generate_keyring(directory: str | Path, *, roles: Iterable[str] = ROLES, root_keys: int = 1) -> Keyring:
    """Create a new ed25519 key for each role (``root_keys`` root keys) in a new or empty ``directory``."""
    from securesystemslib.signer import CryptoSigner

    d = Path(directory)
    roles = list(roles)
    unknown = [r for r in roles if r not in ROLES]
    if unknown or root_keys < 1:
        raise SigningKeyError(f"cannot generate keys for {unknown or f'{root_keys} root keys'} "
                              f"(roles are {', '.join(ROLES)}; at least one root key)")
    names = [f"{role}.pem" if role != "root" or root_keys == 1 else f"root-{i}.pem"
             for role in roles for i in (range(1, root_keys + 1) if role == "root" else [0])]
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    clash = [n for n in names if (d / n).exists()]
    if clash:
        raise SigningKeyError(f"{d} already holds {', '.join(clash)}; refusing to overwrite keys",
                              hint="choose a new keyring directory")
    for name in names:
        _write_private(d / name, CryptoSigner.generate_ed25519().private_bytes)
    return load_keyring(d)


def public_key_summary(keyring: Keyring) -> list[dict[str, str]]:
    """``[{role, keyid, public}]`` for printing: the ids an index operator publishes out of band."""
    return [{"role": role, "keyid": s.public_key.keyid, "public": s.public_key.keyval.get("public", "")}
            for role in ROLES for s in keyring.for_role(role)]
