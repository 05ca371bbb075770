"""Signing an index directory: TUF metadata under ``metadata/`` (python-tuf's Metadata API).

What is signed: every file a client reads from an index (``config.json``, ``search-index.jsonl`` and each
name's entry file) is a TUF *target* with its length and sha256. The ``mirror/`` blobs are not targets:
they are content-addressed and checked against the manifests' hashes, which the targets cover.

The four TUF roles, each in its own file and with its own keys, version and expiry:

- ``root.json`` (and ``<N>.root.json`` for every version): the keys and signature threshold of every
  role. A new root is signed by the threshold of the old root *and* of itself, so clients follow the
  chain from the root they pinned (:func:`rotate_keys`).
- ``targets.json``: the files. A large index delegates them to hash bins (``bins-<hex>.json``, TUF's
  succinct hash delegation, TAP 15), so a client fetches the one bin a name falls in, not every entry.
- ``snapshot.json``: the version (and hash) of ``targets.json`` and of every bin, so a client never
  combines files from different moments (mix-and-match).
- ``timestamp.json``: the version and hash of ``snapshot.json``, re-signed at every :func:`sign_index`
  with a short expiry, so a server that keeps serving old metadata is caught (freeze).

Every new version number is the old one plus one; clients refuse to go back (rollback). Roles are
re-signed when their content changed, when less than half their lifetime is left, or when forced;
the timestamp always. Entry files keep their paths (no consistent snapshots), so while a publish runs a
reader may see a new entry file before the new metadata; it gets a hash mismatch and a retry succeeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import IndexFormatError, IndexSignatureError, NotFoundError, SigningKeyError
from ..fileio import atomic_write_bytes
from ..jsonio import load_strict
from .keys import ROLES, Keyring, load_keyring
from .layout import CONFIG_FILE, METADATA_DIR, SEARCH_FILE
from .writer import index_lock, iter_entry_files

DEFAULT_EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 30, "timestamp": 7}
"""Lifetimes: the timestamp bounds how long a frozen index goes unnoticed; re-sign it before then."""
BINS_PREFIX = "bins"
AUTO_BINS_ABOVE = 2048
"""Targets above which a new index is split into hash bins (about 256 targets per bin)."""
TARGETS_PER_BIN = 256
MAX_BIN_BITS = 14


@dataclass
class SignReport:
    """What :func:`sign_index` wrote."""

    root: Path
    versions: dict[str, int] = field(default_factory=dict)
    expires: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    targets: int = 0
    bins: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"index": str(self.root), "versions": self.versions, "expires": self.expires,
                "changed": self.changed, "targets": self.targets, "bins": self.bins, "notes": self.notes}


def collect_targets(root: Path) -> dict[str, bytes]:
    """Relative POSIX path -> bytes of every file a client reads from the index at ``root``."""
    files: dict[str, bytes] = {}
    for name in (CONFIG_FILE, SEARCH_FILE):
        if (root / name).is_file():
            files[name] = (root / name).read_bytes()
    for path in iter_entry_files(root):
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    return dict(sorted(files.items()))


def configured_expiry_days(root: Path) -> dict[str, int]:
    """The index's own signing lifetimes (``config.json`` ``signing.expires_days``), if it sets any."""
    path = root / CONFIG_FILE
    if not path.is_file():
        return {}
    signing = load_strict(path).get("signing") or {}
    days = signing.get("expires_days") or {} if isinstance(signing, dict) else {}
    return {r: d for r, d in days.items() if r in DEFAULT_EXPIRY_DAYS and type(d) is int and d > 0}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _serializer():
    from tuf.api.serialization.json import JSONSerializer

    return JSONSerializer(compact=False)


class _Signer:
    """One signing pass over an index directory (the caller holds the index lock)."""

    def __init__(self, root: Path, keyring: Keyring, *, expires_days: Mapping[str, int] | None,
                 thresholds: Mapping[str, int] | None, bin_bits: int | None, now: datetime | None,
                 force: bool) -> None:
        self.root = root
        self.md_dir = root / METADATA_DIR
        self.keyring = keyring
        days = {**DEFAULT_EXPIRY_DAYS, **configured_expiry_days(root), **(expires_days or {})}
        self.lifetimes = {r: timedelta(days=d) for r, d in days.items()}
        self.thresholds = dict(thresholds or {})
        self.bin_bits = bin_bits
        self.now = now or _utcnow()
        self.force = force
        self.report = SignReport(root)

    # -- files --------------------------------------------------------------------------------------

    def load(self, role: str):
        from tuf.api.metadata import Metadata

        path = self.md_dir / f"{role}.json"
        if not path.is_file():
            return None
        try:
            return Metadata.from_bytes(path.read_bytes())
        except Exception as exc:  # DeserializationError and friends: the file is not TUF metadata
            raise IndexFormatError(f"{path}: not valid TUF metadata ({exc})",
                                   hint="restore it from version control or re-create the index's metadata") from None

    def write(self, filename: str, md) -> bytes:
        data = md.to_bytes(_serializer())
        atomic_write_bytes(self.md_dir / filename, data)
        return data

    # -- keys ---------------------------------------------------------------------------------------

    def signers_for(self, delegator, role: str) -> list[Any]:
        """Keyring signers the delegator trusts for ``role``, refusing when they cannot meet its threshold."""
        wanted = delegator.get_delegated_role(role)
        have = [s for s in self.keyring.all_signers() if s.public_key.keyid in wanted.keyids]
        if len(have) < wanted.threshold:
            raise SigningKeyError(
                f"{self.root}: signing {role} needs {wanted.threshold} of the keys "
                f"{', '.join(k[:12] for k in wanted.keyids)}; the keyring {self.keyring.source} has {len(have)}",
                hint="pass the keyring this index was created with (`adapterhub index keygen` made it)")
        return have

    def sign(self, md, signers: list[Any]) -> None:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def due(self, md, role: str) -> bool:
        """True when ``md`` must get a new version: forced (all but root), or less than half its lifetime left."""
        lifetime = self.lifetimes["targets" if role.startswith(BINS_PREFIX) else role]
        return (self.force and role != "root") or md.signed.expires - self.now < lifetime / 2

    def expiry(self, role: str) -> datetime:
        return self.now + self.lifetimes["targets" if role.startswith(BINS_PREFIX) else role]

    # -- roles --------------------------------------------------------------------------------------

    def new_root(self):
        from tuf.api.metadata import Metadata, Root

        root = Root(expires=self.expiry("root"), consistent_snapshot=False)
        for role in ROLES:
            signers = self.keyring.for_role(role)
            if not signers:
                raise SigningKeyError(f"{self.root} has no signed metadata yet and the keyring {self.keyring.source} "
                                      f"has no {role} key; a new index needs keys for {', '.join(ROLES)}",
                                      hint="create them with `adapterhub index keygen DIR`")
            for s in signers:
                root.add_key(s.public_key, role)
            threshold = self.thresholds.get(role, 1)
            if not 1 <= threshold <= len(signers):
                raise SigningKeyError(f"{role}: threshold {threshold} needs between 1 and {len(signers)} keys "
                                      f"(the keyring has {len(signers)})")
            root.roles[role].threshold = threshold
        md = Metadata(root)
        self.sign(md, list(self.keyring.for_role("root")))
        self.write_root(md)
        self.report.changed.append("root")
        return md

    def write_root(self, md) -> None:
        data = self.write(f"{md.signed.version}.root.json", md)
        atomic_write_bytes(self.md_dir / "root.json", data)

    def current_root(self):
        md = self.load("root")
        if md is None:
            return self.new_root()
        root = md.signed
        if self.due(md, "root"):
            root_signers = [s for s in self.keyring.all_signers() if s.public_key.keyid in root.roles["root"].keyids]
            if len(root_signers) >= root.roles["root"].threshold:
                root.version += 1
                root.expires = self.expiry("root")
                self.sign(md, root_signers)
                self.write_root(md)
                self.report.changed.append("root")
            else:
                self.report.notes.append(f"root v{root.version} expires {root.expires:%Y-%m-%d}; re-sign with the "
                                         "root keys before then (`adapterhub index sign --keys ROOT_KEYRING`)")
        return md

    def bits_for(self, existing_targets, count: int) -> int:
        if self.bin_bits is not None:
            return self.bin_bits
        delegations = existing_targets.signed.delegations if existing_targets is not None else None
        if delegations is not None and delegations.succinct_roles is not None:
            return delegations.succinct_roles.bit_length
        if count <= AUTO_BINS_ABOVE:
            return 0
        return min(MAX_BIN_BITS, math.ceil(math.log2(count / TARGETS_PER_BIN)))

    def run(self) -> SignReport:
        from tuf.api.metadata import (
            Delegations,
            Metadata,
            MetaFile,
            Snapshot,
            SuccinctRoles,
            TargetFile,
            Targets,
        )

        if not (self.root / CONFIG_FILE).is_file():
            raise NotFoundError(f"{self.root}: not a registry index (no {CONFIG_FILE})")
        root_md = self.current_root()
        root = root_md.signed
        # every key is checked before anything is written: a half-signed index would refuse all readers
        targets_signers = self.signers_for(root, "targets")
        snapshot_signers = self.signers_for(root, "snapshot")
        timestamp_signers = self.signers_for(root, "timestamp")
        files = {p: TargetFile.from_data(p, data, ["sha256"]) for p, data in collect_targets(self.root).items()}
        self.report.targets = len(files)

        # targets (and bins) ----------------------------------------------------------------------
        old_targets = self.load("targets")
        bits = self.bits_for(old_targets, len(files))
        if not 0 <= bits <= MAX_BIN_BITS:
            raise SigningKeyError(f"bin bits must be between 0 and {MAX_BIN_BITS}, not {bits}")
        delegations = None
        by_role: dict[str, dict[str, Any]] = {"targets": files}
        if bits:
            succinct = SuccinctRoles([s.public_key.keyid for s in targets_signers], root.roles["targets"].threshold,
                                     bits, BINS_PREFIX)
            delegations = Delegations({s.public_key.keyid: s.public_key for s in targets_signers},
                                      succinct_roles=succinct)
            by_role = {"targets": {}, **{name: {} for name in succinct.get_roles()}}
            for path, info in files.items():
                by_role[succinct.get_role_for_target(path)][path] = info
            self.report.bins = succinct.number_of_bins
        snapshot_meta: dict[str, Any] = {}
        old_snapshot = self.load("snapshot")
        for role in sorted(by_role, key=lambda r: (r == "targets", r)):  # bins first: targets names them
            old = old_targets if role == "targets" else self.load(role)
            same = (old is not None and old.signed.targets == by_role[role]
                    and (role != "targets" or old.signed.delegations == delegations))
            if same and not self.due(old, role) and self._still_signed(root_md, old, role, old_targets):
                md, data = old, (self.md_dir / f"{role}.json").read_bytes()
            else:
                version = (old.signed.version + 1) if old is not None else self._floor(old_snapshot, role)
                md = Metadata(Targets(version=version, expires=self.expiry(role), targets=by_role[role],
                                      delegations=delegations if role == "targets" else None))
                self.sign(md, targets_signers)
                data = self.write(f"{role}.json", md)
                self.report.changed.append(role)
            snapshot_meta[f"{role}.json"] = MetaFile.from_data(md.signed.version, data, ["sha256"])
            self.report.versions[role] = md.signed.version
            self.report.expires[role] = md.signed.expires.isoformat()
        if old_targets is not None and old_targets.signed.delegations is not None and not bits:
            self.report.notes.append("hash bins were dropped: targets.json lists every file again")

        # snapshot and timestamp -----------------------------------------------------------------
        if (old_snapshot is not None and old_snapshot.signed.meta == snapshot_meta and not self.due(old_snapshot, "snapshot")
                and self._still_signed(root_md, old_snapshot, "snapshot")):
            snapshot_md, snapshot_data = old_snapshot, (self.md_dir / "snapshot.json").read_bytes()
        else:
            version = old_snapshot.signed.version + 1 if old_snapshot is not None else 1
            # a file a client once saw listed stays listed (with a newer version), as the TUF spec requires
            meta = {**(old_snapshot.signed.meta if old_snapshot is not None else {}), **snapshot_meta}
            snapshot_md = Metadata(Snapshot(version=version, expires=self.expiry("snapshot"), meta=meta))
            self.sign(snapshot_md, snapshot_signers)
            snapshot_data = self.write("snapshot.json", snapshot_md)
            self.report.changed.append("snapshot")
        self.report.versions["snapshot"] = snapshot_md.signed.version
        self.report.expires["snapshot"] = snapshot_md.signed.expires.isoformat()
        self._timestamp(timestamp_signers, snapshot_md.signed.version, snapshot_data)
        self.report.versions["root"] = root.version
        self.report.expires["root"] = root.expires.isoformat()
        return self.report

    def _floor(self, old_snapshot, role: str) -> int:
        """First version of a role file that does not exist yet: above any version a snapshot listed for it."""
        listed = old_snapshot.signed.meta.get(f"{role}.json") if old_snapshot is not None else None
        return listed.version + 1 if listed is not None else 1

    def _still_signed(self, root_md, md, role: str, old_targets=None) -> bool:
        """Whether ``md`` still carries the threshold of the keys now trusted for ``role`` (after a rotation)."""
        delegator = root_md.signed
        if role.startswith(BINS_PREFIX):
            if old_targets is None or old_targets.signed.delegations is None:
                return False
            delegator = old_targets.signed
        try:
            delegator.verify_delegate(role, md.signed_bytes, md.signatures)
        except Exception:
            return False
        return True

    def _timestamp(self, signers: list[Any], snapshot_version: int, snapshot_data: bytes) -> None:
        from tuf.api.metadata import Metadata, MetaFile, Timestamp

        old = self.load("timestamp")
        version = old.signed.version + 1 if old is not None else 1
        meta = MetaFile.from_data(snapshot_version, snapshot_data, ["sha256"])
        md = Metadata(Timestamp(version=version, expires=self.expiry("timestamp"), snapshot_meta=meta))
        self.sign(md, signers)
        self.write("timestamp.json", md)
        self.report.changed.append("timestamp")
        self.report.versions["timestamp"] = version
        self.report.expires["timestamp"] = md.signed.expires.isoformat()


def sign_index(root: str | Path, keyring: Keyring, *, expires_days: Mapping[str, int] | None = None,
               thresholds: Mapping[str, int] | None = None, bin_bits: int | None = None,
               now: datetime | None = None, force: bool = False) -> SignReport:
    """Create or update the signed metadata of the index directory ``root`` (see module docstring).

    A new index gets a root from the keyring's keys (``thresholds`` per role, default 1). ``expires_days``
    overrides :data:`DEFAULT_EXPIRY_DAYS`; ``bin_bits`` splits targets into ``2**bin_bits`` hash bins
    (default: keep the current layout; a new index above :data:`AUTO_BINS_ABOVE` files gets bins).
    """
    root = Path(root)
    with index_lock(root):
        return _Signer(root, keyring, expires_days=expires_days, thresholds=thresholds, bin_bits=bin_bits,
                       now=now, force=force).run()


def rotate_keys(root: str | Path, current: Keyring, new: Keyring, *, thresholds: Mapping[str, int] | None = None,
                expires_days: Mapping[str, int] | None = None, now: datetime | None = None) -> SignReport:
    """Replace the keys of every role ``new`` has keys for, by a new root version, then re-sign everything.

    The new root is signed by the current root keys (meeting the current root threshold) and by the new
    root's own keys (meeting its threshold), so a client that trusts the current root accepts it; keys
    not in the new root stop being trusted. Roles ``new`` has no keys for keep their keys.
    """
    from tuf.api.metadata import Metadata

    root = Path(root)
    with index_lock(root):
        signer = _Signer(root, current.overridden_by(new), expires_days=expires_days, thresholds=None,
                         bin_bits=None, now=now, force=True)
        old_md = signer.load("root")
        if old_md is None:
            raise NotFoundError(f"{root}: has no signed metadata to rotate; sign it first with `adapterhub index sign`")
        old_root = old_md.signed
        md = Metadata.from_bytes(old_md.to_bytes())
        new_root = md.signed
        new_root.version += 1
        new_root.expires = signer.expiry("root")
        for role in ROLES:
            keys = new.for_role(role)
            if not keys:
                continue
            for keyid in list(new_root.roles[role].keyids):
                new_root.revoke_key(keyid, role)
            for s in keys:
                new_root.add_key(s.public_key, role)
        for role, threshold in (thresholds or {}).items():
            if role not in ROLES or not 1 <= threshold <= len(new_root.roles[role].keyids):
                raise SigningKeyError(f"{role}: threshold {threshold} needs between 1 and "
                                      f"{len(new_root.roles.get(role).keyids) if role in ROLES else 0} keys")
            new_root.roles[role].threshold = threshold
        old_signers = [s for s in current.all_signers() if s.public_key.keyid in old_root.roles["root"].keyids]
        new_signers = [s for s in new.for_role("root") or current.all_signers()
                       if s.public_key.keyid in new_root.roles["root"].keyids]
        signer.sign(md, list({s.public_key.keyid: s for s in [*old_signers, *new_signers]}.values()))
        for name, delegator in (("current", old_root), ("new", new_root)):
            result = delegator.get_verification_result("root", md.signed_bytes, md.signatures)
            if not result.verified:
                raise IndexSignatureError(f"{root}: the new root has {len(result.signed)} of the {result.threshold} "
                                     f"signatures the {name} root needs",
                                     hint=f"pass enough {name} root keys ({'--keys' if name == 'current' else '--new-keys'})")
        signer.write_root(md)
        signer.report.changed.append("root")
        signer.force = True
        return signer.run()


def is_signed(root: str | Path) -> bool:
    """True when the index directory has signed metadata (and so must be re-signed after every change)."""
    return (Path(root) / METADATA_DIR / "root.json").is_file()


def signing_keyring(root: str | Path, keys: str | Path | None) -> Keyring | None:
    """The keyring to re-sign ``root`` with after a change, checked *before* the change is made.

    None for an unsigned index and no keys. A signed index needs keys (``keys`` or ``ADAPTERHUB_INDEX_KEYS``)
    able to meet the targets, snapshot and timestamp thresholds of its root; otherwise this refuses, so
    the change is not made and readers never see entries their signed metadata does not cover.
    """
    root = Path(root)
    keys = keys if keys is not None else settings.index_keys()
    if keys is None:
        if is_signed(root):
            raise SigningKeyError(f"{root} is a signed index: a change must be re-signed, and no keyring was given; "
                                  "nothing was changed", hint="pass --keys KEYRING or set ADAPTERHUB_INDEX_KEYS")
        return None
    keyring = load_keyring(keys)
    signer = _Signer(root, keyring, expires_days=None, thresholds=None, bin_bits=None, now=None, force=False)
    root_md = signer.load("root")
    if root_md is None:
        missing = [role for role in ROLES if not keyring.for_role(role)]
        if missing:
            raise SigningKeyError(f"{keyring.source} has no {', '.join(missing)} key, which a new signed index needs; "
                                  "nothing was changed", hint="create a full keyring with `adapterhub index keygen`")
        return keyring
    for role in ("targets", "snapshot", "timestamp"):
        signer.signers_for(root_md.signed, role)
    return keyring
