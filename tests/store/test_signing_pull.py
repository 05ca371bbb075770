"""``pull`` with trusted signers: the OMS signature is checked over the exact view before it is published.

The attack a signature stops is a changed index or mirror: every byte a pull takes is checked against
the sha256 of the manifest the *index* serves, so whoever controls the index controls what is pulled.
These tests change the index (and the mirror) the way such an attacker would — consistently, so that
every sha256 still matches — and check that a trusted pull refuses it and publishes nothing, while
the same pull without trusted signers accepts it.
"""

# ruff: noqa: F811 - fixtures imported from server_fixtures come back as test arguments
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from support.server_fixtures import ADMIN_TOKEN
from support.signing_support import make_key, make_package, ok, oms_api_verify, run
from support.store_support import blobs, leftovers, safetensors_bytes, views

from adapterhub.errors import SignatureError, SignatureMismatchError
from adapterhub.manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME
from adapterhub.publish import publish_local, publish_to_hub
from adapterhub.publish.sign import SigningKey, sign_package
from adapterhub.registry import init_index, open_index
from adapterhub.registry.entries import manifest_sha256
from adapterhub.registry.layout import entry_path
from adapterhub.server import HubServer
from adapterhub.store import pull
from adapterhub.store.trust import Trust


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX", "ADAPTERHUB_TRUST_KEYS", "HF_ENDPOINT",
                "ADAPTERHUB_TRUST_CERT_CHAINS", "ADAPTERHUB_TRUST_INDEX_SIGNERS", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def key(tmp_path: Path):
    return make_key(tmp_path / "keys")


@pytest.fixture
def registry(tmp_path: Path, key) -> Path:
    """A directory registry holding ``toy-adapter 1.0.0``, signed with ``key``."""
    d = make_package(tmp_path / "pkg")
    sign_package(d, SigningKey(key.private))
    publish_local(d, tmp_path / "registry")
    return tmp_path / "registry"


def _trust(*public_keys: Path) -> Trust:
    return Trust.from_files(public_keys)


def _rewrite_entry(registry: Path, change) -> None:
    """Change the published manifest of toy-adapter 1.0.0 as an index attacker would (hashes consistent)."""
    path = registry / entry_path("toy-adapter")
    line = json.loads(path.read_text())
    change(line["manifest"])
    line["manifest_sha256"] = manifest_sha256(line["manifest"])
    path.write_text(json.dumps(line) + "\n")


def _nothing_published(cache: Path) -> None:
    assert views(cache) == [] and leftovers(cache) == []


def test_a_signed_release_pulls_with_its_signer_and_the_view_is_the_signed_directory(tmp_path: Path, key,
                                                                                     registry: Path) -> None:
    pulled = pull("toy-adapter", index=registry, trust=_trust(key.public))
    assert (pulled.path / MANIFEST_FILENAME).read_bytes() == (tmp_path / "pkg" / MANIFEST_FILENAME).read_bytes()
    assert pulled.files[SIGNATURE_FILENAME].is_file() and pulled.manifest.sources[0].type == "bundled"
    assert leftovers(tmp_path / "cache") == []  # the staging directory is gone
    oms_api_verify(pulled.path, public_key=key.public)


def test_an_unsigned_release_is_refused_before_any_download(tmp_path: Path, key) -> None:
    publish_local(make_package(tmp_path / "pkg"), tmp_path / "registry")
    result = run("pull", "toy-adapter", "--index", tmp_path / "registry", "--trust-key", key.public)
    assert isinstance(result.exception, SignatureError) and "is not signed" in str(result.exception)
    assert blobs(tmp_path / "cache") == []
    _nothing_published(tmp_path / "cache")
    ok("pull", "toy-adapter", "--index", tmp_path / "registry")  # without trusted signers it is fine


def test_another_signer_is_refused_and_nothing_is_published(tmp_path: Path, registry: Path) -> None:
    other = make_key(tmp_path / "keys", "other")
    with pytest.raises(SignatureError, match="not made by a trusted signer"):
        pull("toy-adapter", index=registry, trust=_trust(other.public))
    _nothing_published(tmp_path / "cache")


def test_a_changed_index_manifest_is_refused_with_trust_and_taken_without(tmp_path: Path, key,
                                                                          registry: Path) -> None:
    def louder(manifest: dict) -> None:
        manifest["adapter"]["config"]["alpha"] = 800  # same weights, 100x the effect

    _rewrite_entry(registry, louder)
    with pytest.raises(SignatureMismatchError, match="adapterhub.json"):
        pull("toy-adapter", index=registry, trust=_trust(key.public))
    _nothing_published(tmp_path / "cache")
    unchecked = pull("toy-adapter", index=registry)  # what the signature protects against
    assert unchecked.manifest.adapter.config.alpha == 800


def test_swapped_weights_in_index_and_mirror_are_refused(tmp_path: Path, key, registry: Path) -> None:
    evil = safetensors_bytes(64, seed=9)
    digest = hashlib.sha256(evil).hexdigest()
    (registry / "mirror" / digest).write_bytes(evil)

    def swap(manifest: dict) -> None:
        entry = next(f for f in manifest["files"] if f["path"] == "adapter.safetensors")
        entry.update(sha256=digest, size=len(evil))

    _rewrite_entry(registry, swap)
    with pytest.raises(SignatureMismatchError, match="adapter.safetensors"):
        pull("toy-adapter", index=registry, trust=_trust(key.public))
    _nothing_published(tmp_path / "cache")


def test_a_dropped_signature_entry_is_refused(tmp_path: Path, key, registry: Path) -> None:
    _rewrite_entry(registry, lambda m: m.update(files=[f for f in m["files"] if f["path"] != SIGNATURE_FILENAME]))
    with pytest.raises(SignatureError, match="is not signed"):
        pull("toy-adapter", index=registry, trust=_trust(key.public))


def test_a_warm_view_is_checked_again_and_rebuilt_when_changed(tmp_path: Path, key, registry: Path) -> None:
    first = pull("toy-adapter", index=registry, trust=_trust(key.public))
    edited = first.path / MANIFEST_FILENAME
    edited.write_text(edited.read_text().replace('"alpha": 8', '"alpha": 800'))
    again = pull("toy-adapter", index=registry, trust=_trust(key.public))
    assert again.downloaded == 0 and '"alpha": 8,' in (again.path / MANIFEST_FILENAME).read_text()
    oms_api_verify(again.path, public_key=key.public)
    other = make_key(tmp_path / "keys", "other")
    with pytest.raises(SignatureError, match="not made by a trusted signer"):
        pull("toy-adapter", index=registry, trust=_trust(other.public))
    assert views(tmp_path / "cache") == ["toy-adapter/1.0.0"]  # a wrong key is no reason to drop the view


def test_offline_rebuild_is_verified_too(tmp_path: Path, key, registry: Path) -> None:
    pull("toy-adapter", index=registry, trust=_trust(key.public))
    shutil.rmtree(tmp_path / "cache" / "adapters")
    shutil.rmtree(registry / "mirror")  # nothing to fetch from: the view comes from cached blobs
    pulled = pull("toy-adapter", index=registry, offline=True, trust=_trust(key.public))
    oms_api_verify(pulled.path, public_key=key.public)
    shutil.rmtree(tmp_path / "cache" / "adapters")
    with pytest.raises(SignatureError):
        pull("toy-adapter", index=registry, offline=True, trust=_trust(make_key(tmp_path / "k2", "x").public))
    _nothing_published(tmp_path / "cache")


def test_trusted_keys_from_the_environment(tmp_path: Path, key, registry: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_key(tmp_path / "keys", "other")
    monkeypatch.setenv("ADAPTERHUB_TRUST_KEYS", str(other.public))
    with pytest.raises(SignatureError):
        pull("toy-adapter", index=registry)
    assert isinstance(run("pull", "toy-adapter", "--index", registry).exception, SignatureError)
    monkeypatch.setenv("ADAPTERHUB_TRUST_KEYS", f"{other.public}:{key.public}")
    assert "signature verified" in ok("pull", "toy-adapter", "--index", registry).output


def _name_signer(registry: Path, public_key: Path) -> None:
    config = json.loads((registry / "config.json").read_text())
    config["adapter_signers"] = [{"name": "team", "public_key": public_key.read_text()}]
    (registry / "config.json").write_text(json.dumps(config))


def test_index_signers_are_used_only_when_opted_in(tmp_path: Path, key, registry: Path) -> None:
    _name_signer(registry, key.public)
    assert open_index(registry).config["adapter_signers"][0]["name"] == "team"  # the schema accepts it
    assert "signature verified" in ok("pull", "toy-adapter", "--index", registry, "--trust-index-signers").output
    other = make_key(tmp_path / "keys", "other")
    _name_signer(registry, other.public)
    result = run("pull", "toy-adapter", "--index", registry, "--trust-index-signers")
    assert isinstance(result.exception, SignatureError) and "signer 'team' of the index" in str(result.exception)
    ok("pull", "toy-adapter", "--index", registry)  # not opted in: the index's word is not required


def test_opting_in_to_index_signers_of_an_index_naming_none_is_an_error(registry: Path) -> None:
    result = run("pull", "toy-adapter", "--index", registry, "--trust-index-signers")
    assert isinstance(result.exception, SignatureError) and "names no adapter_signers" in str(result.exception)


def test_dependencies_need_a_trusted_signature_too(tmp_path: Path, key) -> None:
    registry = init_index(tmp_path / "registry", "team")
    publish_local(make_package(tmp_path / "dep", name="base-adapter"), registry)
    top = make_package(tmp_path / "top", name="top-adapter")
    manifest = json.loads((top / MANIFEST_FILENAME).read_text())
    manifest["dependencies"] = [{"name": "base-adapter"}]
    (top / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    sign_package(top, SigningKey(key.private))
    publish_local(top, registry)
    with pytest.raises(SignatureError, match="base-adapter 1.0.0 is not signed"):
        pull("top-adapter", index=registry, trust=_trust(key.public))
    assert pull("top-adapter", index=registry, trust=_trust(key.public), dependencies=False).path.is_dir()


def test_publish_to_the_hub_uploads_the_signature_and_pull_checks_it(tmp_path: Path, key,
                                                                     hub_server: HubServer) -> None:
    index = init_index(tmp_path / "index", "team")
    d = make_package(tmp_path / "pkg")
    publish_to_hub(d, "org/toy", endpoint=hub_server.endpoint, token=ADMIN_TOKEN)  # unsigned, not indexed
    sign_package(d, SigningKey(key.private))
    signed = publish_to_hub(d, "org/toy", endpoint=hub_server.endpoint, token=ADMIN_TOKEN, index=index)
    assert not signed.reused_commit  # the unsigned commit lacks model.sig: a new commit carries it
    assert SIGNATURE_FILENAME in signed.operations and signed.manifest.file(SIGNATURE_FILENAME) is not None
    again = publish_to_hub(d, "org/toy", endpoint=hub_server.endpoint, token=ADMIN_TOKEN)
    assert again.reused_commit and again.commit == signed.commit
    pulled = pull("toy-adapter", index=index, trust=_trust(key.public))
    assert pulled.manifest.sources[0].revision == signed.commit
    oms_api_verify(pulled.path, public_key=key.public)


def test_a_signature_made_by_the_model_signing_tool_itself_is_accepted(tmp_path: Path, key) -> None:
    import model_signing

    d = make_package(tmp_path / "pkg")
    model_signing.signing.Config().use_elliptic_key_signer(private_key=key.private).sign(d, d / SIGNATURE_FILENAME)
    publish_local(d, tmp_path / "registry")
    first = pull("toy-adapter", index=tmp_path / "registry", trust=_trust(key.public))
    inode = first.path.stat().st_ino
    again = pull("toy-adapter", index=tmp_path / "registry", trust=_trust(key.public))
    assert again.path.stat().st_ino == inode  # verified as it is (its record file is not "extra"): not rebuilt
