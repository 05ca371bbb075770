"""Registry index: layout, resolver (specs, yanking, base filter, closure), search, writer, check."""

from __future__ import annotations

import json
import re

import pytest
from support.manifest_samples import manifest_with

from adapterhub.errors import (
    ConflictError,
    DependencyCycleError,
    DuplicateKeyError,
    IndexFormatError,
    InvalidNameError,
    InvalidVersionError,
    JSONFormatError,
    NotFoundError,
    SchemaError,
    UnsupportedSchemaVersionError,
    YankedError,
)
from adapterhub.manifest import parse_manifest
from adapterhub.registry import (
    SearchQuery,
    YankedVersionWarning,
    add_release,
    check_index,
    entry_path,
    init_index,
    open_index,
    rebuild_search,
    resolve,
    resolve_closure,
    search,
    set_yanked,
)


@pytest.fixture
def index_dir(tmp_path):
    root = tmp_path / "index"
    init_index(root, "test")
    return root


def add(root, name, version, deps=None, **extra):
    return add_release(root, parse_manifest(manifest_with(name, version, deps, **extra)))


def test_entry_path_sharding():
    assert entry_path("ab") == "2/ab"
    assert entry_path("abc") == "3/a/abc"
    assert entry_path("sst2-houlsby") == "ss/t2/sst2-houlsby"
    assert entry_path("SST2_Houlsby") == "ss/t2/sst2-houlsby"
    with pytest.raises(InvalidNameError):
        entry_path("../etc")


def test_resolve_specs(index_dir):
    for v in ["0.9.0", "1.0.0", "1.2.0", "2.0.0", "2.1.0rc1"]:
        add(index_dir, "sst2-houlsby", v)
    idx = open_index(index_dir)
    assert resolve(idx, "sst2-houlsby").version == "2.0.0"  # final release before pre-release
    assert resolve(idx, "sst2-houlsby==1.0.0").version == "1.0.0"
    assert resolve(idx, "sst2-houlsby>=1,<2").version == "1.2.0"
    assert resolve(idx, "sst2-houlsby@1.2.0").version == "1.2.0"
    assert resolve(idx, "sst2-houlsby>=2.1.0rc1").version == "2.1.0rc1"
    assert resolve(idx, "SST2_Houlsby~=1.0").version == "1.2.0"  # normalised name
    with pytest.raises(NotFoundError, match="available: 0.9.0, 1.0.0"):
        resolve(idx, "sst2-houlsby>=3")
    with pytest.raises(NotFoundError, match="no adapter named 'nope-nope'"):
        resolve(idx, "nope-nope")
    with pytest.raises(InvalidVersionError):
        resolve(idx, "sst2-houlsby>=>1")
    with pytest.raises(InvalidVersionError):
        resolve(idx, "sst2-houlsby@not-a-version")


def test_yanking(index_dir):
    add(index_dir, "sst2-lora", "1.0.0")
    add(index_dir, "sst2-lora", "1.1.0")
    set_yanked(index_dir, "sst2-lora", "1.1.0", "wrong labels")
    idx = open_index(index_dir)
    assert resolve(idx, "sst2-lora").version == "1.0.0"
    with pytest.raises(YankedError, match="only yanked versions match: 1.1.0 \\(wrong labels\\)"):
        resolve(idx, "sst2-lora>1.0")
    with pytest.warns(YankedVersionWarning, match="yanked"):
        assert resolve(idx, "sst2-lora==1.1.0").version == "1.1.0"
    set_yanked(index_dir, "sst2-lora", "1.1.0", False)  # unyank
    assert resolve(open_index(index_dir), "sst2-lora").version == "1.1.0"


def test_yanked_only_name_disappears_from_search(index_dir):
    add(index_dir, "gone-adapter", "1.0.0")
    set_yanked(index_dir, "gone-adapter", "1.0.0", "leaked data")
    assert search(open_index(index_dir), SearchQuery("gone")) == []
    assert check_index(index_dir).ok


def test_base_model_filter(index_dir):
    add(index_dir, "multi-base", "1.0.0")
    other = manifest_with("multi-base", "2.0.0")
    other["base_model"] = {"id": "bert-base-uncased", "model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12}
    add_release(index_dir, parse_manifest(other))
    idx = open_index(index_dir)
    assert resolve(idx, "multi-base").version == "2.0.0"
    assert resolve(idx, "multi-base", base_model="sentence-transformers/all-MiniLM-L6-v2").version == "1.0.0"
    with pytest.raises(NotFoundError, match="no version for base model 'gpt2'"):
        resolve(idx, "multi-base", base_model="gpt2")


def test_dependency_closure_order(index_dir):
    add(index_dir, "lang-en", "1.0.0")
    add(index_dir, "lang-en", "2.0.0")
    add(index_dir, "task-a", "1.0.0", [{"name": "lang-en", "spec": "<2"}])
    add(index_dir, "fusion-ab", "1.0.0", [{"name": "task-a"}, {"name": "lang-en", "spec": ">=1"}])
    order = resolve_closure(open_index(index_dir), ["fusion-ab"])
    assert [(r.name, r.version) for r in order] == [("lang-en", "1.0.0"), ("task-a", "1.0.0"), ("fusion-ab", "1.0.0")]
    assert order[0].required_by == ("fusion-ab", "task-a")


def test_dependency_conflict_names_both_sides(index_dir):
    add(index_dir, "lang-en", "1.0.0")
    add(index_dir, "lang-en", "2.0.0")
    add(index_dir, "task-a", "1.0.0", [{"name": "lang-en", "spec": "<2"}])
    add(index_dir, "task-b", "1.0.0", [{"name": "lang-en", "spec": ">=2"}])
    with pytest.raises(ConflictError, match="lang-en: task-b needs >=2, but task-a selected 1.0.0"):
        resolve_closure(open_index(index_dir), ["task-a", "task-b"])


def test_dependency_cycle(index_dir):
    add(index_dir, "cyc-a", "1.0.0", [{"name": "cyc-b"}])
    add(index_dir, "cyc-b", "1.0.0", [{"name": "cyc-a"}])
    with pytest.raises(DependencyCycleError, match="cyc-a -> cyc-b -> cyc-a"):
        resolve_closure(open_index(index_dir), ["cyc-a"])


def test_missing_dependency(index_dir):
    add(index_dir, "needs-ghost", "1.0.0", [{"name": "ghost-adapter"}])
    with pytest.raises(NotFoundError, match="ghost-adapter"):
        resolve_closure(open_index(index_dir), ["needs-ghost"])


def test_releases_are_immutable(index_dir):
    add(index_dir, "imm-adapter", "1.0.0")
    add(index_dir, "imm-adapter", "1.0.0")  # identical content: no-op
    changed = manifest_with("imm-adapter", "1.0.0", description="something else")
    with pytest.raises(ConflictError, match="immutable"):
        add_release(index_dir, parse_manifest(changed))
    lines = (index_dir / entry_path("imm-adapter")).read_text().splitlines()
    assert len(lines) == 1


def test_search(index_dir):
    add(index_dir, "sst2-houlsby", "1.0.0")
    lora = manifest_with("sst2-lora", "1.0.0", description="LoRA for sentiment")
    lora["adapter"] = {"method": "lora", "config": {"r": 8, "alpha": 16}}
    add_release(index_dir, parse_manifest(lora))
    idx = open_index(index_dir)
    assert [r["name"] for r in search(idx, SearchQuery("sst2"))] == ["sst2-houlsby", "sst2-lora"]
    assert [r["name"] for r in search(idx, SearchQuery("", method="lora"))] == ["sst2-lora"]
    assert [r["name"] for r in search(idx, SearchQuery("", method="houlsby"))] == ["sst2-houlsby"]
    assert [r["name"] for r in search(idx, SearchQuery("", task="sst2"))] == ["sst2-houlsby", "sst2-lora"]
    assert search(idx, SearchQuery("", base_model="gpt2")) == []
    assert [r["name"] for r in search(idx, SearchQuery("sentiment lora"))] == ["sst2-lora"]


def test_check_reports_problems(index_dir):
    add(index_dir, "good-one", "1.0.0")
    assert check_index(index_dir).ok
    misplaced = index_dir / "zz" / "zz" / "good-one"
    misplaced.parent.mkdir(parents=True)
    misplaced.write_text((index_dir / entry_path("good-one")).read_text())
    report = check_index(index_dir)
    assert any("belongs at go/od/good-one" in p for p in report.problems)
    misplaced.unlink()
    (index_dir / "search-index.jsonl").write_text("")
    assert any("good-one missing" in p for p in check_index(index_dir).problems)
    rebuild_search(index_dir)
    assert check_index(index_dir).ok


def _write_entry_file(root, name, lines):
    path = root / entry_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


def test_bad_index_files(index_dir):
    add(index_dir, "victim-one", "1.0.0")
    good = (index_dir / entry_path("victim-one")).read_text()
    entry = json.loads(good)
    cases = [
        ("tampered manifest", json.dumps({**entry, "manifest": {**entry["manifest"], "description": "evil"}}),
         IndexFormatError, "manifest_sha256 does not match"),
        ("name mismatch", json.dumps({**entry, "name": "other-name"}), IndexFormatError, "but its manifest says"),
        ("duplicate key", good.strip()[:-1] + ', "yanked": true}', DuplicateKeyError, "duplicate key 'yanked'"),
        ("not json", "{nope", JSONFormatError, "invalid JSON"),
        ("bad v", json.dumps({**entry, "v": 0}), IndexFormatError, "bad entry format version 0"),
        ("schema", json.dumps({**entry, "yanked": 3}), SchemaError, "/yanked"),
    ]
    for label, line, error, fragment in cases:
        _write_entry_file(index_dir, "victim-one", [line + "\n"])
        with pytest.raises(error, match=re.escape(fragment)):
            open_index(index_dir).entries("victim-one")
        assert label
    # the same version twice
    _write_entry_file(index_dir, "victim-one", [good, good])
    with pytest.raises(IndexFormatError, match="listed twice"):
        open_index(index_dir).entries("victim-one")


def test_unknown_entry_format_is_skipped(index_dir):
    add(index_dir, "future-proof", "1.0.0")
    path = index_dir / entry_path("future-proof")
    future = json.dumps({"v": 2, "name": "future-proof", "version": "2.0.0", "whatever": True})
    path.write_text(path.read_text() + future + "\n")
    assert [e.version for e in open_index(index_dir).entries("future-proof")] == ["1.0.0"]


def test_unknown_major_index_version_fails(index_dir):
    (index_dir / "config.json").write_text(json.dumps({"index_format": "2.0", "name": "test"}))
    with pytest.raises(UnsupportedSchemaVersionError, match="index format 2.0"):
        open_index(index_dir)


def test_config_validation(index_dir):
    (index_dir / "config.json").write_text(json.dumps({"index_format": "1.0", "name": "Bad Name"}))
    with pytest.raises(SchemaError, match="/name"):
        open_index(index_dir)


def test_bundled_index_is_valid():
    from adapterhub.resources import bundled_index_dir, bundled_mirror_dir

    mirror = bundled_mirror_dir()
    report = check_index(bundled_index_dir(), mirror=mirror if mirror.is_dir() else None)
    assert report.ok, report.problems


def test_one_pin_check_for_resolver_lock_and_cache():
    """Requirement.allows is the only spec check; dependencies parse like a user's requirement."""
    from adapterhub.errors import InvalidVersionError
    from adapterhub.names import dependency_requirement, parse_requirement

    req = dependency_requirement("My_Adapter", ">=1.0,<2")
    assert req == parse_requirement("my-adapter>=1.0,<2")
    assert req.allows("1.5.0") and req.allows("1.9.0rc1") and not req.allows("2.0.0") and not req.allows("0.9")
    assert dependency_requirement("ab", None).allows("0.0.1a1")
    pinned = dependency_requirement("ab", "==1.2.0")
    assert pinned.exact is not None and pinned.allows("1.2") and not pinned.allows("1.2.1")
    with pytest.raises(InvalidVersionError):
        req.allows("not a version")
