"""Signing an index, pinning its root, verifying it: the repository side and the client's trust store."""

# ruff: noqa: F811 - the fixture imported from index_signing_support comes back as a test argument

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.index_signing_support import add, tamper_entry
from support.paths import REPO

from adapterhub.cli import main
from adapterhub.errors import IndexTrustError, SigningKeyError
from adapterhub.registry import init_index, open_index, resolve
from adapterhub.registry.keys import Keyring, generate_keyring, load_keyring
from adapterhub.registry.signing import collect_targets, sign_index
from adapterhub.registry.trust import BUNDLED_ROOT_SHA256, bundled_root, pin_root
from adapterhub.registry.verify import verify_index
from adapterhub.resources import bundled_index_dir

RESIGN = "adapterhub index sign registry_index --keys <the bundled index keyring> (docs/security.md)"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_TRUST_DIR", str(tmp_path / "trust"))
    for var in ("ADAPTERHUB_REQUIRE_SIGNED_INDEX", "ADAPTERHUB_INDEX_KEYS", "ADAPTERHUB_INDEX", "ADAPTERHUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# --- the bundled index ---------------------------------------------------------------------------


def test_bundled_index_agrees_with_its_signed_metadata():
    """Fails when registry_index/ changed without being re-signed."""
    report = verify_index(None)
    assert report.ok, f"{report.problems}: re-sign with `{RESIGN}`"
    assert report.root_source == "the root pinned in this package"
    assert report.targets == len(collect_targets(bundled_index_dir()))
    soon = datetime.now(timezone.utc) + timedelta(days=2 * 365)
    for role, expires in report.expires.items():
        assert datetime.fromisoformat(expires) > soon, f"{role} expires {expires}: re-sign with `{RESIGN}`"


def test_bundled_root_is_pinned_by_hash_in_the_package(tmp_path, monkeypatch):
    data = bundled_root()
    assert hashlib.sha256(data).hexdigest() == BUNDLED_ROOT_SHA256
    copy = tmp_path / "registry_index"
    shutil.copytree(bundled_index_dir(), copy)
    doc = json.loads(data)
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # any change to the pinned root
    (copy / "metadata" / "1.root.json").write_text(json.dumps(doc))
    import adapterhub.resources as resources

    monkeypatch.setattr(resources, "bundled_index_dir", lambda: copy)
    with pytest.raises(IndexTrustError, match="not the root pinned in this package"):
        bundled_root()


def test_an_unsigned_change_to_a_copy_of_the_bundled_index_is_reported(tmp_path):
    copy = tmp_path / "registry_index"
    shutil.copytree(bundled_index_dir(), copy)
    add(copy, "sst2-extra", "1.0.0")
    tamper_entry(copy, "sst2-lora", "e" * 64)
    report = verify_index(copy, root=bundled_root())
    assert any("ss/t2/sst2-extra: not covered by the signed metadata" in p for p in report.problems)
    assert any("ss/t2/sst2-lora: does not match the signed index metadata" in p for p in report.problems)


# --- signing -------------------------------------------------------------------------------------


def _index(tmp_path: Path, names: int = 3) -> Path:
    root = tmp_path / "index"
    init_index(root, "t")
    for i in range(names):
        add(root, f"adapter-{i:02d}", "1.0.0")
    return root


def test_signing_again_only_renews_the_timestamp_and_a_change_bumps_the_rest(tmp_path):
    root = _index(tmp_path)
    keys = generate_keyring(tmp_path / "keys")
    first = sign_index(root, keys)
    assert first.changed == ["root", "targets", "snapshot", "timestamp"] and first.targets == 5
    again = sign_index(root, keys)
    assert again.changed == ["timestamp"]
    assert again.versions == {**first.versions, "timestamp": 2}
    add(root, "adapter-00", "1.1.0")
    third = sign_index(root, keys)
    assert third.changed == ["targets", "snapshot", "timestamp"]
    assert (third.versions["targets"], third.versions["snapshot"], third.versions["timestamp"]) == (2, 2, 3)


def test_signing_with_an_incomplete_keyring_writes_nothing(tmp_path):
    root = _index(tmp_path)
    keys = generate_keyring(tmp_path / "keys")
    sign_index(root, keys)
    add(root, "adapter-00", "1.1.0")
    before = {p.name: p.read_bytes() for p in (root / "metadata").iterdir()}
    partial = Keyring({"targets": keys.for_role("targets")}, "targets only")
    with pytest.raises(SigningKeyError, match="signing snapshot needs 1 of the keys"):
        sign_index(root, partial)
    assert {p.name: p.read_bytes() for p in (root / "metadata").iterdir()} == before
    other = tmp_path / "other"
    init_index(other, "other")
    with pytest.raises(SigningKeyError, match="has no root key"):
        sign_index(other, partial)
    assert not (other / "metadata").exists()


def test_hash_bins_client_fetches_one_bin_per_name(tmp_path):
    root = _index(tmp_path, names=24)
    keys = generate_keyring(tmp_path / "keys")
    report = sign_index(root, keys, bin_bits=3)
    assert report.bins == 8 and sorted(p.name for p in (root / "metadata").glob("bins-*.json"))[0] == "bins-0.json"
    pin_root(root, (root / "metadata" / "root.json").read_bytes())
    idx = open_index(root)
    assert resolve(idx, "adapter-17").version == "1.0.0"
    state_dir = next((tmp_path / "trust").iterdir()) / "metadata"
    config_and_entry_bins = {p.name for p in state_dir.glob("bins-*.json")}
    assert 1 <= len(config_and_entry_bins) <= 2  # config.json's bin and adapter-17's bin, nothing else
    assert verify_index(root).ok
    # targets stay in their bins when the index grows; one bin changes
    add(root, "adapter-17", "2.0.0")
    changed = sign_index(root, keys).changed
    assert [c for c in changed if c.startswith("bins-")] != [] and len([c for c in changed if c.startswith("bins-")]) <= 2
    assert resolve(open_index(root), "adapter-17").version == "2.0.0"


def test_a_signed_index_is_not_changed_without_keys_that_can_resign_it(tmp_path, capsys):
    root = _index(tmp_path)
    sign_index(root, generate_keyring(tmp_path / "keys"))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    manifest = tmp_path / "m.json"
    from support.manifest_samples import manifest_with

    manifest.write_text(json.dumps(manifest_with("adapter-00", "9.0.0")))
    code, _, err = run(capsys, "index", "add", manifest, "--index", root)
    assert code == 1 and "is a signed index" in err and "nothing was changed" in err
    code, _, err = run(capsys, "index", "add", manifest, "--index", root, "--keys", generate_keyring(tmp_path / "other").source)
    assert code == 1 and "needs 1 of the keys" in err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    code, out, _ = run(capsys, "index", "add", manifest, "--index", root, "--keys", tmp_path / "keys")
    assert code == 0 and "signed" in out
    assert verify_index(root).ok


def test_keygen_writes_private_files_and_refuses_to_overwrite(tmp_path, capsys):
    code, out, _ = run(capsys, "index", "keygen", tmp_path / "k", "--root-keys", "3", "--json")
    assert code == 0
    roles = [k["role"] for k in json.loads(out)["keys"]]
    assert roles == ["root", "root", "root", "targets", "snapshot", "timestamp"]
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == [
        "root-1.pem", "root-2.pem", "root-3.pem", "snapshot.pem", "targets.pem", "timestamp.pem"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "k").iterdir())
    with pytest.raises(SigningKeyError, match="refusing to overwrite"):
        generate_keyring(tmp_path / "k")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "root.pem").write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a usable"):
        load_keyring(tmp_path / "bad")


def test_cli_sign_trust_verify_and_tamper(tmp_path, capsys):
    root = _index(tmp_path)
    assert run(capsys, "index", "keygen", tmp_path / "keys")[0] == 0
    code, out, _ = run(capsys, "index", "sign", root, "--keys", tmp_path / "keys", "--expires", "timestamp=2")
    assert code == 0 and "timestamp v1" in out
    code, out, _ = run(capsys, "index", "verify", root)
    assert code == 0 and "consistent, not that it is authentic" in out
    code, out, _ = run(capsys, "index", "trust", root, "--root", root / "metadata" / "1.root.json")
    assert code == 0 and "pinned root" in out
    code, out, _ = run(capsys, "index", "verify", root, "--json")
    assert code == 0 and json.loads(out)["root"].startswith("the root pinned for this index")
    assert json.loads(run(capsys, "index", "trust", "--list", "--json")[1])[0]["location"] == str(root.resolve())
    assert run(capsys, "search", "adapter", "--index", root)[0] == 0
    tamper_entry(root, "adapter-01", "e" * 64)
    code, _, err = run(capsys, "info", "adapter-01", "--index", root)
    assert code == 1 and "does not match the signed index metadata" in err
    assert run(capsys, "index", "verify", root)[0] == 1
    code, out, _ = run(capsys, "index", "trust", root, "--remove")
    assert code == 0 and "forgot" in out
    assert run(capsys, "info", "adapter-01", "--index", root)[0] == 0  # unauthenticated again, as before signing


def test_trust_on_first_use_pins_the_served_root(signed_repo, capsys):
    code, out, err = run(capsys, "index", "trust", signed_repo.url)
    assert code == 0 and "trust on first use" in err and "timestamp v1" in out
    tamper_entry(signed_repo.root, "adapter-00", "e" * 64)
    assert run(capsys, "info", "adapter-00", "--index", signed_repo.url)[0] == 1


def test_pinning_a_root_the_index_does_not_match_is_undone(signed_repo, tmp_path, capsys):
    other = tmp_path / "other"
    init_index(other, "other")
    sign_index(other, generate_keyring(tmp_path / "other-keys"))
    code, _, err = run(capsys, "index", "trust", signed_repo.url, "--root", other / "metadata" / "1.root.json")
    assert code == 1 and "signature check failed" in err
    assert json.loads(run(capsys, "index", "trust", "--list", "--json")[1]) == []


def test_require_signed_index_refuses_unpinned_indexes_but_not_the_bundled_one(tmp_path, monkeypatch):
    root = _index(tmp_path)
    monkeypatch.setenv("ADAPTERHUB_REQUIRE_SIGNED_INDEX", "1")
    with pytest.raises(IndexTrustError, match="no pinned root"):
        open_index(root)
    assert resolve(open_index(), "sst2-houlsby").version == "1.0.0"
    sign_index(root, generate_keyring(tmp_path / "keys"))
    pin_root(root, (root / "metadata" / "1.root.json").read_bytes())
    assert resolve(open_index(root), "adapter-00").version == "1.0.0"


def test_pinned_http_index_works_offline_from_verified_cache(signed_repo):
    signed_repo.pin()
    cache = signed_repo.tmp / "client-cache"
    assert resolve(open_index(signed_repo.url, cache_dir=cache, offline=False), "adapter-02").version == "1.0.0"
    signed_repo.server.close()
    idx = open_index(signed_repo.url, cache_dir=cache, offline=True)
    assert resolve(idx, "adapter-02").version == "1.0.0"
    assert idx.trusted_state().timestamp == 1


@pytest.mark.slow
def test_concurrent_processes_share_one_trust_state(tmp_path):
    """python-tuf's updater is not multi-process safe (it replaces a root.json symlink in place, among
    others); the trust lock serialises its work, so concurrent readers and a signer never collide."""
    root = _index(tmp_path, names=1)
    keys = generate_keyring(tmp_path / "keys")
    sign_index(root, keys)
    pin_root(root, (root / "metadata" / "1.root.json").read_bytes())
    code = ("import sys; from adapterhub.registry import open_index, resolve\n"
            "for i in range(25):\n"
            "    assert resolve(open_index(sys.argv[1]), 'adapter-00').version == '1.0.0'\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ)) for _ in range(4)]
    for _ in range(5):
        sign_index(root, keys)  # only the timestamp changes: readers must never see an error
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e.strip().splitlines()[-1] for e in errors if e.strip()]
    state = next((tmp_path / "trust").iterdir()) / "metadata"
    assert json.loads((state / "timestamp.json").read_text())["signed"]["version"] >= 1


def test_publish_resigns_a_signed_registry_and_refuses_without_keys(tmp_path, capsys):
    from adapterhub.store import pull

    releases = {}
    for name in ("sst2-houlsby", "sst2-lora"):
        releases[name] = tmp_path / name
        shutil.copytree(pull(name).path, releases[name])
    registry = tmp_path / "registry"
    assert run(capsys, "index", "keygen", tmp_path / "keys")[0] == 0
    code, _, err = run(capsys, "publish", releases["sst2-houlsby"], "--to", registry, "--keys", tmp_path / "keys")
    assert code == 0, err
    assert verify_index(registry).ok
    before = sorted(p.relative_to(registry) for p in registry.rglob("*") if ".lock" not in p.name)
    code, _, err = run(capsys, "publish", releases["sst2-lora"], "--to", registry)
    assert code == 1 and "is a signed index" in err
    assert sorted(p.relative_to(registry) for p in registry.rglob("*") if ".lock" not in p.name) == before
    code, _, err = run(capsys, "publish", releases["sst2-lora"], "--to", registry, "--keys", tmp_path / "keys")
    assert code == 0, err
    report = verify_index(registry)
    assert report.ok and report.versions["targets"] == 2
    pin_root(registry, (registry / "metadata" / "1.root.json").read_bytes())
    code, out, err = run(capsys, "pull", "sst2-lora", "--index", registry, "-q")
    assert code == 0, err


def test_security_doc_examples_run():
    from support.doc_examples import run_doc_examples

    namespace = run_doc_examples("security.md")
    assert namespace["lock"].adapters[0].name == "sst2-houlsby"


def test_a_served_copy_of_the_bundled_index_can_be_pinned_to_the_packaged_root(tmp_path, capsys):
    from support.index_signing_support import IndexServer

    copy = tmp_path / "served"
    shutil.copytree(bundled_index_dir(), copy)
    server = IndexServer(copy)
    try:
        code, out, err = run(capsys, "index", "trust", server.url, "--root", "bundled")
        assert code == 0 and "pinned root" in out, err
        assert run(capsys, "info", "sst2-houlsby", "--index", server.url)[0] == 0
        tamper_entry(copy, "sst2-houlsby", "e" * 64)
        code, _, err = run(capsys, "info", "sst2-houlsby", "--index", server.url)
        assert code == 1 and "does not match the signed index metadata" in err
    finally:
        server.close()


def test_lock_and_index_verify_do_not_import_torch(tmp_path):
    probe = ("import sys; from adapterhub.cli import main; rc = main(sys.argv[1:]); "
             "bad = [m for m in ('torch', 'transformers', 'safetensors', 'huggingface_hub') if m in sys.modules]; "
             "print('IMPORTED', bad, rc)")
    for args in (["lock", "sst2-houlsby"], ["index", "verify"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                              env={**os.environ, "ADAPTERHUB_CACHE": str(tmp_path / "c")})
        assert "IMPORTED [] 0" in proc.stdout, (args, proc.stdout, proc.stderr)


def test_every_test_named_in_security_md_exists():
    import re

    named = set(re.findall(r"`(test_[a-z0-9_]+)(?:\[[a-z-]+\])?`", (REPO / "docs" / "security.md").read_text()))
    defined = set(re.findall(r"^def (test_[a-z0-9_]+)", "".join(
        p.read_text() for p in (REPO / "tests").rglob("test_*.py")), re.M))
    assert named and named <= defined, named - defined
