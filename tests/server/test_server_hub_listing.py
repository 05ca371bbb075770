"""The server lists files, cards and models as the real Hub does, seen through the real client:
plain git files carry only their git blob sha1 (no ``lfs`` block), LFS is decided by ``.gitattributes``
(or the Hub's defaults, or size), repo info has ``cardData``/``library_name``, and ``list_models``
searches and filters. The listing faults lie about hashes for the pull's tamper tests."""

from __future__ import annotations

import hashlib

from huggingface_hub import HfApi
from support.store_support import put_repo, safetensors_bytes

from adapterhub.server.repo_card import front_matter, lfs_patterns

CARD = b"---\nlibrary_name: peft\nbase_model: org/tiny-base\ntags:\n- lora\n---\n# A card\n"


def _api(hub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=False)


def test_plain_files_have_no_lfs_block_and_gitattributes_decides(hub):
    files = {"adapter_model.safetensors": safetensors_bytes(64), "adapter_config.json": b'{"r": 4}\n',
             "weights.dat": b"\x00\x01" * 10}
    commit = put_repo(hub.server, "org/plain", files)
    tree = {f.path: f for f in _api(hub).list_repo_tree("org/plain", recursive=True, revision=commit)}
    assert tree["adapter_model.safetensors"].lfs is not None  # the Hub's default patterns
    assert tree["adapter_config.json"].lfs is None
    assert tree["adapter_config.json"].blob_id == hashlib.sha1(b"blob 9\0" + files["adapter_config.json"]).hexdigest()
    assert tree["weights.dat"].lfs is None
    commit = put_repo(hub.server, "org/plain", {".gitattributes": b"*.dat filter=lfs diff=lfs merge=lfs -text\n"})
    tree = {f.path: f for f in _api(hub).list_repo_tree("org/plain", recursive=True, revision=commit)}
    assert tree["weights.dat"].lfs is not None and tree["adapter_model.safetensors"].lfs is None
    paths = {p.path: p for p in _api(hub).get_paths_info("org/plain", ["weights.dat", "adapter_config.json"],
                                                        revision=commit)}
    assert paths["weights.dat"].lfs is not None and paths["adapter_config.json"].lfs is None
    info = _api(hub).model_info("org/plain", files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["adapter_config.json"].lfs is None and siblings["weights.dat"].lfs is not None


def test_model_info_has_card_data_and_library_name(hub):
    put_repo(hub.server, "org/carded", {"README.md": CARD, "adapter_config.json": b"{}"})
    info = _api(hub).model_info("org/carded")
    assert info.library_name == "peft"
    assert info.card_data is not None and info.card_data.to_dict()["base_model"] == "org/tiny-base"
    assert "lora" in info.tags and "base_model:org/tiny-base" in info.tags


def test_list_models_search_filter_author_limit_sort(hub):
    put_repo(hub.server, "org/carded", {"README.md": CARD, "adapter_config.json": b"{}"})
    put_repo(hub.server, "org/other", {"README.md": b"---\nlibrary_name: adapter-transformers\n---\n"})
    put_repo(hub.server, "someone/carded-too", {"README.md": CARD})
    api = _api(hub)
    assert sorted(m.id for m in api.list_models(search="carded")) == ["org/carded", "someone/carded-too"]
    assert [m.id for m in api.list_models(search="carded", author="org")] == ["org/carded"]
    assert sorted(m.id for m in api.list_models(filter="peft")) == ["org/carded", "someone/carded-too"]
    assert [m.id for m in api.list_models(filter="adapter-transformers")] == ["org/other"]
    assert len(list(api.list_models(limit=2))) == 2
    newest = [m.id for m in api.list_models(sort="last_modified")]
    assert newest[0] == "someone/carded-too"
    full = next(iter(api.list_models(search="org/carded", full=True, cardData=True)))
    assert full.card_data is not None and full.card_data.to_dict()["library_name"] == "peft"


def test_private_repos_are_not_listed_to_strangers(hub):
    hub.api.create_repo("org/secret", private=True)
    ids = [m.id for m in _api(hub).list_models(author="org")]
    assert "org/secret" not in ids
    assert "org/secret" in [m.id for m in hub.api.list_models(author="org")]


def test_listing_faults_lie_about_hashes(hub, fault_plan):
    files = {"adapter_model.safetensors": safetensors_bytes(64), "adapter_config.json": b'{"r": 4}\n'}
    commit = put_repo(hub.server, "org/lying", files)
    fault_plan.tamper_listing(path="*")
    tree = {f.path: f for f in _api(hub).list_repo_tree("org/lying", recursive=True, revision=commit)}
    assert tree["adapter_model.safetensors"].lfs.sha256 != hashlib.sha256(files["adapter_model.safetensors"]).hexdigest()
    assert tree["adapter_config.json"].blob_id != hashlib.sha1(b"blob 9\0" + files["adapter_config.json"]).hexdigest()
    fault_plan.clear()
    fault_plan.flip_byte(path="adapter_config.json")
    body = hub.download("org/lying", "adapter_config.json", revision=commit).read_bytes()
    assert len(body) == len(files["adapter_config.json"]) and body != files["adapter_config.json"]


def test_gitattributes_and_front_matter_parsing():
    assert lfs_patterns("*.bin filter=lfs diff=lfs\n# *.x filter=lfs\n*.txt text\n") == ("*.bin",)
    assert front_matter(b"no card") is None and front_matter(b"---\n- a list\n---\n") is None
    assert front_matter(CARD) == {"library_name": "peft", "base_model": "org/tiny-base", "tags": ["lora"]}
