"""``pull("hf:ORG/REPO[@REV][:SUBFOLDER]")`` with the real huggingface_hub client against our server: PEFT,
``adapters``-library and adapterhub repos, verified by the hashes the server lists; tampering (a served byte,
a listed hash, a file listed without a hash) is a typed error and publishes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.hub_repos import BASE_ID, PEFT_DIR, put_fixture_repos
from support.hub_repos import files_of as _files
from support.server_fixtures import ADMIN_TOKEN
from support.store_support import put_repo

from adapterhub.errors import (
    AuthenticationError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    OfflineError,
)
from adapterhub.manifest import load_manifest
from adapterhub.store import list_cached, pull, verify
from adapterhub.store.hub_repo import HubRepo, resolve_revision
from adapterhub.transport import TokenScope


@pytest.fixture
def hub_repos(hub, cache):
    repos = put_fixture_repos(hub.server)
    return {"peft": repos.peft, "library": repos.library, "endpoint": repos.endpoint}


def _cache_state(cache: Path) -> tuple[list[str], list[str]]:
    views = sorted(str(p.relative_to(cache)) for p in (cache / "adapters").glob("*/*")) \
        if (cache / "adapters").is_dir() else []
    manifests = sorted(p.name for p in (cache / "hub").rglob("*.json")) if (cache / "hub").is_dir() else []
    return views, manifests


def test_peft_repo_by_branch_commit_and_warm(hub_repos, cache, hub):
    pulled = pull("hf:org/peft-lora", endpoint=hub.endpoint)
    m = pulled.manifest
    assert m.adapter.method == "lora" and m.base_model.id == BASE_ID
    assert m.version == f"0+g{hub_repos['peft'][:12]}"
    assert (pulled.path / "adapter_model.safetensors").read_bytes() == (PEFT_DIR / "adapter_model.safetensors").read_bytes()
    assert load_manifest(pulled.path).name == m.name
    assert any(s.revision == hub_repos["peft"] for s in m.sources)
    assert [c.name for c in list_cached()] == [m.name]
    assert verify().ok
    # Pinned to the commit: warm, no server needed.
    hub.server.stop()
    again = pull(f"hf:org/peft-lora@{hub_repos['peft']}", endpoint=hub.endpoint)
    assert again.path == pulled.path and again.downloaded == 0
    # A branch offline: the commit it last resolved to.
    assert pull("hf:org/peft-lora", endpoint=hub.endpoint, offline=True).path == pulled.path
    with pytest.raises(OfflineError, match="never resolved"):
        pull("hf:org/peft-lora@other-branch", endpoint=hub.endpoint, offline=True)


def test_library_repo_in_a_subfolder(hub_repos, cache, hub):
    ref = f"hf:org/library@{hub_repos['library']}:adapters/seq_bn"
    pulled = pull(ref, endpoint=hub.endpoint)
    assert pulled.manifest.adapter.method == "bottleneck"
    assert set(pulled.files) == {"adapter.safetensors", "adapter_config.json"}
    assert pulled.name.startswith("org-library-adapters-seq-bn")
    with pytest.raises(NotFoundError):
        pull("hf:org/library:nowhere", endpoint=hub.endpoint)


def test_adapterhub_repo_uses_its_own_manifest(hub_repos, cache, hub, tmp_path):
    first = pull("hf:org/peft-lora", endpoint=hub.endpoint)
    folder = tmp_path / "release"
    shutil.copytree(first.path, folder, ignore=shutil.ignore_patterns(".adapterhub-view.json"))
    doc = json.loads((folder / "adapterhub.json").read_text())
    doc["name"], doc["version"] = "my-lora", "1.2.0"
    (folder / "adapterhub.json").write_text(json.dumps(doc))
    put_repo(hub.server, "org/released", _files(folder))
    pulled = pull("hf:org/released@main", endpoint=hub.endpoint)
    assert (pulled.name, pulled.version) == ("my-lora", "1.2.0")
    assert {c.name for c in list_cached()} == {first.name, "my-lora"}


@pytest.mark.parametrize("fault", ["flip_config", "flip_weights", "listed_config", "listed_weights", "unhashed"])
def test_tampering_is_refused_and_nothing_is_published(hub_repos, cache, hub, fault_plan, fault):
    target = "adapter_config.json" if fault.endswith("config") or fault == "unhashed" else "adapter_model.safetensors"
    if fault.startswith("flip"):
        fault_plan.flip_byte(path=target, times=None)
    else:
        fault_plan.tamper_listing(path=target, unhashed=fault == "unhashed")
    with pytest.raises(IntegrityError) as info:
        pull("hf:org/peft-lora", endpoint=hub.endpoint)
    assert target in str(info.value)
    assert _cache_state(cache) == ([], [])
    fault_plan.clear()
    assert pull("hf:org/peft-lora", endpoint=hub.endpoint).manifest.adapter.method == "lora"


def test_references_that_do_not_parse_or_exist(hub_repos, cache, hub):
    with pytest.raises(InvalidNameError):
        pull("hf:org", endpoint=hub.endpoint)
    with pytest.raises(NotFoundError):
        pull("hf:org/peft-lora@no-such-branch", endpoint=hub.endpoint)
    with pytest.raises(OfflineError):
        pull("hf:org/peft-lora@" + "0" * 40, endpoint=hub.endpoint, offline=True)



def test_a_private_repo_needs_the_token_and_gets_it_only_at_an_endpoint_the_user_configured(hub_repos, cache, hub):
    hub.api.create_repo("org/private", private=True)
    put_repo(hub.server, "org/private", _files(PEFT_DIR))
    with pytest.raises(AuthenticationError):
        pull("hf:org/private", endpoint=hub.endpoint, token=False)
    assert _cache_state(cache) == ([], [])
    # The same server under a name the user did not configure gets no token, so the repo stays hidden.
    other = HubRepo("org/private", endpoint=hub.endpoint.replace("127.0.0.1", "localhost"), token=ADMIN_TOKEN)
    with pytest.raises(AuthenticationError, match="no token was sent"):
        resolve_revision(other, scope=TokenScope.configured([]))
    assert pull("hf:org/private", endpoint=hub.endpoint, token=ADMIN_TOKEN).manifest.adapter.method == "lora"


@pytest.mark.parametrize("flavour", ["safetensors", "bin"])
def test_an_adapters_fusion_folder_brings_its_members(hub_repos, cache, hub, flavour):
    from support.paths import REFERENCE

    root = REFERENCE / "adapters" / "bert" / "fuse_seq_bn" / flavour
    files = {f"fused/{folder}/{name}": body for folder in ("a", "b", "fusion")
             for name, body in _files(root / folder).items()}
    commit = put_repo(hub.server, "org/fused", files)
    pulled = pull("hf:org/fused:fused/fusion", endpoint=hub.endpoint)
    assert pulled.manifest.adapter.method == "fusion"
    assert sorted(d.name for d in pulled.dependencies) == ["org-fused-fused-a", "org-fused-fused-b"]
    assert all(d.reference == f"hf:org/fused@{commit}:fused/{d.name[-1]}" for d in pulled.dependencies)
    assert all(not p.endswith(".bin") for d in (pulled, *pulled.dependencies) for p in d.files)
    alone = pull("hf:org/fused:fused/fusion", endpoint=hub.endpoint, dependencies=False)
    assert alone.dependencies == () and alone.path == pulled.path
