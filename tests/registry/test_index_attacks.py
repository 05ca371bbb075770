"""Each attack in the TUF specification's list, against a signed index served over HTTP on 127.0.0.1.

Every test first shows the attack working on a client that has no pinned root (adapterhub's behaviour
before index signing, still the behaviour for unsigned indexes), then shows the pinned client refusing
it with a typed error.
"""

# ruff: noqa: F811 - the fixture imported from index_signing_support comes back as a test argument

from __future__ import annotations

import shutil
import time

import pytest
from support.index_signing_support import NAMES, add, endless, past, tamper_entry

from adapterhub.errors import (
    ExpiredMetadataError,
    IndexSignatureError,
    IndexTrustError,
    MetadataSizeError,
    RollbackError,
)
from adapterhub.registry import resolve, set_yanked
from adapterhub.registry.keys import generate_keyring
from adapterhub.registry.signing import rotate_keys, sign_index

pytestmark = pytest.mark.network_local

EVIL = "e" * 64


def test_arbitrary_installation_rewritten_entry_is_refused(signed_repo):
    """A mirror rewrites files[].sha256 and recomputes manifest_sha256: the entry is self-consistent."""
    signed_repo.pin()
    good = resolve(signed_repo.client(), "adapter-01").manifest.files[0].sha256
    mirror = signed_repo.snapshot("mirror")
    tamper_entry(mirror, "adapter-01", EVIL)
    signed_repo.serve(mirror)
    refused(signed_repo, "adapter-01", IndexTrustError, "does not match the signed index metadata",
            unpinned_sees=lambda r: r.manifest.files[0].sha256 == EVIL)
    signed_repo.serve(signed_repo.root)
    assert resolve(signed_repo.client(), "adapter-01").manifest.files[0].sha256 == good


def test_rollback_to_index_before_a_yank_is_refused(signed_repo):
    """Yesterday's index (before a version was yanked for a CVE) must not resolve the yanked version."""
    signed_repo.pin()
    add(signed_repo.root, "adapter-02", "1.1.0")
    signed_repo.sign()
    before_yank = signed_repo.snapshot("before-yank")
    assert resolve(signed_repo.client(), "adapter-02").version == "1.1.0"
    set_yanked(signed_repo.root, "adapter-02", "1.1.0", "CVE-2026-0001")
    signed_repo.sign()
    assert resolve(signed_repo.client(), "adapter-02").version == "1.0.0"  # the client now trusts the newer index
    signed_repo.serve(before_yank)
    refused(signed_repo, "adapter-02", RollbackError, "timestamp version",
            unpinned_sees=lambda r: r.version == "1.1.0")


MIXES = {
    # new timestamp and snapshot with the old targets.json (and the entry it matches): snapshot pins targets
    "one-role-rolled-back": (("metadata/targets.json", "ad/ap/adapter-00"), "adapter-00", IndexTrustError, "targets",
                             lambda r: r.version == "1.0.0"),
    # current metadata with one entry file from an older snapshot (the yank undone): targets pin each entry
    "entry-from-older-snapshot": (("ad/ap/adapter-01",), "adapter-01", IndexTrustError,
                                  "does not match the signed index metadata", lambda r: not r.entry.is_yanked),
}


@pytest.mark.parametrize("mix", MIXES, ids=list(MIXES))
def test_mix_and_match_files_from_different_snapshots_are_refused(signed_repo, mix):
    paths, name, error, match, unpinned_sees = MIXES[mix]
    signed_repo.pin()
    old = signed_repo.snapshot("old")
    add(signed_repo.root, "adapter-00", "2.0.0")
    set_yanked(signed_repo.root, "adapter-01", "1.0.0", "broken")
    signed_repo.sign()
    serve_mixed(signed_repo, old, *paths)
    refused(signed_repo, name, error, match, unpinned_sees=unpinned_sees)


def test_indefinite_freeze_expired_metadata_is_refused(signed_repo):
    """A server that stops updating keeps serving validly signed metadata until it expires, then no longer."""
    signed_repo.pin()
    frozen = signed_repo.snapshot("frozen")
    sign_index(frozen, signed_repo.keys, now=past(10), expires_days={"timestamp": 7})  # expired 3 days ago
    signed_repo.serve(frozen)
    refused(signed_repo, "adapter-00", ExpiredMetadataError, "expired",
            unpinned_sees=lambda r: r.version == "1.0.0")


def test_endless_data_metadata_and_entries_stop_at_their_caps(signed_repo):
    signed_repo.pin()
    resolve(signed_repo.client(), "adapter-00")
    signed_repo.server.overrides["/metadata/timestamp.json"] = endless
    start = time.monotonic()
    with pytest.raises(MetadataSizeError, match="16384"):
        resolve(signed_repo.client(), "adapter-00")
    assert time.monotonic() - start < 10
    del signed_repo.server.overrides["/metadata/timestamp.json"]
    signed_repo.server.overrides["/ad/ap/adapter-01"] = endless  # an entry: capped at its signed length
    with pytest.raises(IndexTrustError, match="does not match the signed index metadata"):
        resolve(signed_repo.client(), "adapter-01")
    assert time.monotonic() - start < 20


def test_malicious_mirror_resigned_with_its_own_keys_is_refused(signed_repo, tmp_path):
    """A mirror that tampers and re-signs everything consistently with keys of its own."""
    signed_repo.pin()
    resolve(signed_repo.client(), "adapter-00")
    mirror = signed_repo.snapshot("mirror")
    shutil.rmtree(mirror / "metadata")
    tamper_entry(mirror, "adapter-00", EVIL)
    sign_index(mirror, generate_keyring(tmp_path / "mirror-keys"))
    signed_repo.serve(mirror)
    refused(signed_repo, "adapter-00", IndexSignatureError, "signature check failed",
            unpinned_sees=lambda r: r.manifest.files[0].sha256 == EVIL)


def test_malicious_mirror_serving_an_unsigned_copy_is_refused(signed_repo):
    signed_repo.pin()
    mirror = signed_repo.snapshot("unsigned")
    shutil.rmtree(mirror / "metadata")
    tamper_entry(mirror, "adapter-00", EVIL)
    signed_repo.serve(mirror)
    refused(signed_repo, "adapter-00", IndexTrustError, "signed metadata missing",
            unpinned_sees=lambda r: r.manifest.files[0].sha256 == EVIL)


def test_key_compromise_below_the_root_threshold_cannot_rotate_keys(signed_repo, tmp_path):
    """Root needs 2 of 3 keys; an attacker with one root key signs a root v2 that trusts only its keys."""
    keys = generate_keyring(tmp_path / "k3", root_keys=3)
    signed_repo.recreate(keys, thresholds={"root": 2})
    assert resolve(signed_repo.client(), "adapter-00").version == "1.0.0"
    mirror = signed_repo.snapshot("attack")
    stolen = type(keys)({"root": keys.for_role("root")[:1]}, "stolen root-1.pem")
    attacker = generate_keyring(tmp_path / "attacker")
    with pytest.raises(IndexSignatureError, match="1 of the 2 signatures the current root needs"):
        rotate_keys(mirror, stolen, attacker)  # our own tool refuses to write it ...
    forged = _forge_root(mirror, keys.for_role("root")[:1], attacker)  # ... so the attacker forges it by hand
    tamper_entry(mirror, "adapter-00", EVIL)
    sign_index(mirror, attacker, force=True)
    assert forged.signed.version == 2
    signed_repo.serve(mirror)
    refused(signed_repo, "adapter-00", IndexSignatureError, "root was signed by 1/2 keys",
            unpinned_sees=lambda r: r.manifest.files[0].sha256 == EVIL)


def test_key_compromise_below_the_targets_threshold_is_refused(signed_repo, tmp_path):
    """Targets need 2 of 2 keys; the attacker holds one of them (and, worst case, snapshot and timestamp)."""
    keys = generate_keyring(tmp_path / "k")
    second = generate_keyring(tmp_path / "k-extra", roles=["targets"])
    both = type(keys)({**{r: keys.for_role(r) for r in ("root", "snapshot", "timestamp")},
                       "targets": keys.for_role("targets") + second.for_role("targets")}, "two targets keys")
    signed_repo.recreate(both, thresholds={"targets": 2})
    assert resolve(signed_repo.client(), "adapter-00").version == "1.0.0"
    mirror = signed_repo.snapshot("attack")
    tamper_entry(mirror, "adapter-00", EVIL)
    one = type(keys)({r: keys.for_role(r) for r in ("targets", "snapshot", "timestamp")}, "one targets key")
    with pytest.raises(IndexTrustError, match="needs 2 of the keys"):
        sign_index(mirror, one)  # our tool refuses ...
    _sign_below_threshold(mirror, one)  # ... the attacker signs anyway
    signed_repo.serve(mirror)
    refused(signed_repo, "adapter-00", IndexSignatureError, "targets was signed by 1/2 keys",
            unpinned_sees=lambda r: r.manifest.files[0].sha256 == EVIL)


def test_key_rotation_is_followed_and_retired_keys_are_refused(signed_repo, tmp_path):
    signed_repo.pin()
    assert resolve(signed_repo.client(), "adapter-00").version == "1.0.0"
    old_keys = signed_repo.keys
    retired = signed_repo.snapshot("before-rotation")
    new = generate_keyring(tmp_path / "new-keys")
    report = rotate_keys(signed_repo.root, old_keys, new)
    assert report.versions["root"] == 2
    add(signed_repo.root, "adapter-00", "2.0.0")
    signed_repo.keys = new
    signed_repo.sign()
    assert resolve(signed_repo.client(), "adapter-00").version == "2.0.0"  # followed 1.root.json -> 2.root.json
    # the retired keys still sign, but the trusted root v2 no longer lists them
    retired_copy = signed_repo.snapshot("retired-keys")
    shutil.rmtree(retired_copy / "metadata")
    shutil.copytree(retired / "metadata", retired_copy / "metadata")
    shutil.copy(signed_repo.root / "metadata" / "2.root.json", retired_copy / "metadata" / "2.root.json")
    tamper_entry(retired_copy, "adapter-00", EVIL)
    sign_index(retired_copy, old_keys, force=True)
    signed_repo.serve(retired_copy)
    with pytest.raises(IndexSignatureError):
        resolve(signed_repo.client(), "adapter-00")


def test_rollback_protection_survives_new_processes(signed_repo):
    """The newest versions seen are persisted in the trust dir: a separate process refuses older ones."""
    import subprocess
    import sys

    signed_repo.pin()
    old = signed_repo.snapshot("old")
    signed_repo.sign()
    signed_repo.sign()
    code = ("import sys; from adapterhub.registry import open_index, resolve; "
            "idx = open_index(sys.argv[1], cache_dir=__import__('pathlib').Path(sys.argv[2]), offline=False); "
            "print(resolve(idx, 'adapter-00').version, idx.trusted_state().timestamp)")
    env = {**__import__("os").environ}
    out = subprocess.run([sys.executable, "-c", code, signed_repo.url, str(signed_repo.tmp / "c1")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0.0", "3"]
    signed_repo.serve(old)
    out = subprocess.run([sys.executable, "-c", code, signed_repo.url, str(signed_repo.tmp / "c2")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0 and "RollbackError" in out.stderr


def test_pinned_index_over_the_trusted_names_only(signed_repo):
    """A file the signed targets do not list does not exist, even if the server has it."""
    signed_repo.pin()
    mirror = signed_repo.snapshot("extra")
    add(mirror, "adapter-99", "1.0.0")  # added behind the signer's back
    signed_repo.serve(mirror)
    assert [e.version for e in signed_repo.client(trusted=False).entries("adapter-99")] == ["1.0.0"]
    assert signed_repo.client().entries("adapter-99") == []
    assert [e.version for e in signed_repo.client().entries(NAMES[0])] == ["1.0.0"]


# --- what an attacker does by hand (our tools refuse) ------------------------------------------------


def refused(repo, requirement: str, error: type[Exception], match: str, *, unpinned_sees) -> None:
    """The attack works on a client without a pinned root (what adapterhub did before index signing):
    ``unpinned_sees`` holds for what it resolves. The client with the pinned root refuses it."""
    assert unpinned_sees(resolve(repo.client(trusted=False), requirement))
    with pytest.raises(error, match=match):
        resolve(repo.client(), requirement)


def serve_mixed(repo, old, *paths: str) -> None:
    """Serve the index as it is now, but with ``paths`` as they were in the older copy ``old``."""
    mixed = repo.snapshot("mixed")
    for path in paths:
        shutil.copy(old / path, mixed / path)
    repo.serve(mixed)


def _forge_root(directory, root_signers, new_keys):
    """Root v2 trusting only ``new_keys``, signed by ``root_signers`` and the new root key."""
    from tuf.api.metadata import Metadata

    md = Metadata.from_file(str(directory / "metadata" / "root.json"))
    root = md.signed
    root.version += 1
    for role in ("root", "targets", "snapshot", "timestamp"):
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        for s in new_keys.for_role(role):
            root.add_key(s.public_key, role)
        root.roles[role].threshold = 1
    md.signatures.clear()
    for s in [*root_signers, *new_keys.for_role("root")]:
        md.sign(s, append=True)
    data = md.to_bytes()
    (directory / "metadata" / "2.root.json").write_bytes(data)
    (directory / "metadata" / "root.json").write_bytes(data)
    return md


def _sign_below_threshold(directory, keys):
    """Re-sign targets, snapshot and timestamp with whatever keys are at hand, ignoring thresholds."""
    from tuf.api.metadata import Metadata, MetaFile, TargetFile

    from adapterhub.registry.signing import collect_targets

    md_dir = directory / "metadata"

    def resign(role, mutate):
        md = Metadata.from_file(str(md_dir / f"{role}.json"))
        md.signed.version += 1
        mutate(md.signed)
        md.signatures.clear()
        for s in keys.for_role(role):
            md.sign(s, append=True)
        data = md.to_bytes()
        (md_dir / f"{role}.json").write_bytes(data)
        return md.signed.version, data

    tv, tdata = resign("targets", lambda t: setattr(t, "targets", {
        p: TargetFile.from_data(p, d, ["sha256"]) for p, d in collect_targets(directory).items()}))
    sv, sdata = resign("snapshot", lambda s: s.meta.__setitem__("targets.json", MetaFile.from_data(tv, tdata, ["sha256"])))
    resign("timestamp", lambda t: setattr(t, "snapshot_meta", MetaFile.from_data(sv, sdata, ["sha256"])))
