"""Faults and bad input: each ends in a clear error or a verified file, never in half-written state."""

from __future__ import annotations

import dataclasses
import pickle
import time

import pytest
from support.store_support import (
    FAST,
    HubRepo,
    blobs,
    leftovers,
    put_repo,
    raw_safetensors,
    safetensors_bytes,
    views,
    with_http_source,
)

from adapterhub.errors import (
    DownloadError,
    IntegrityError,
    NotFoundError,
    SchemaError,
    SizeLimitError,
    UnsafeFileError,
)
from adapterhub.manifest import FileEntry, HfSource
from adapterhub.server import FaultKind
from adapterhub.store import FetchOptions, gc, pull

BIG = safetensors_bytes(64 * 1024)  # 256 KiB: several chunks, so faults land mid-body


def assert_clean(cache_root) -> None:
    """Nothing half-written: no blob, no view, and no temp file or lease after gc."""
    assert blobs(cache_root) == []
    assert views(cache_root) == []
    gc()
    assert leftovers(cache_root) == []


def served(hub_server, pinned: dict[str, bytes], on_server: dict[str, bytes]) -> HubRepo:
    """A repo whose server bytes may differ from what the manifest pins."""
    commit = put_repo(hub_server, "org/faulty", on_server)
    r = HubRepo(hub_server, "org/faulty", commit, pinned)
    return r


@pytest.fixture
def big(hub_server) -> HubRepo:
    files = {"adapter.safetensors": BIG}
    return HubRepo(hub_server, "org/big", put_repo(hub_server, "org/big", files), files)


@pytest.mark.parametrize("via", ["hub", "http"])
def test_one_byte_changed(cache, hub_server, via):
    changed = bytearray(BIG)
    changed[len(BIG) // 2] ^= 1
    r = served(hub_server, {"adapter.safetensors": BIG}, {"adapter.safetensors": bytes(changed)})
    m = r.manifest() if via == "hub" else with_http_source(r.manifest(), r.resolve_base())
    with pytest.raises(IntegrityError, match="sha256"):
        pull(m, options=FAST)
    assert_clean(cache)


@pytest.mark.parametrize("via", ["hub", "http"])
def test_file_truncated_at_half_on_the_server(cache, hub_server, via):
    r = served(hub_server, {"adapter.safetensors": BIG}, {"adapter.safetensors": BIG[: len(BIG) // 2]})
    m = r.manifest() if via == "hub" else with_http_source(r.manifest(), r.resolve_base())
    with pytest.raises(IntegrityError, match="bytes"):
        pull(m, options=FAST)
    assert_clean(cache)


def test_server_sends_more_than_the_manifest_size(cache, hub_server):
    r = served(hub_server, {"adapter.safetensors": BIG}, {"adapter.safetensors": BIG + b"\0" * 100})
    with pytest.raises(IntegrityError, match="bytes"):  # the Hub's HEAD already says the size is wrong
        pull(r.manifest(), options=FAST)
    with pytest.raises(SizeLimitError, match="more than"):  # plain HTTP: refused at size + 1
        pull(with_http_source(r.manifest(), r.resolve_base()), options=FAST)
    assert_clean(cache)


def test_extra_bytes_after_the_body_are_refused(cache, big):
    big.plan.extra_bytes(64, times=None)
    with pytest.raises(SizeLimitError):
        pull(big.manifest(), options=FAST)
    assert_clean(cache)


def test_connection_cut_mid_body_is_resumed_with_range(cache, big):
    big.plan.truncate(0.5)
    result = pull(big.manifest(), options=FAST)
    assert result.files["adapter.safetensors"].read_bytes() == BIG
    gets = [a for a in big.plan.applied if a.method == "GET"]
    assert gets[0].kind is FaultKind.TRUNCATE


def test_server_ignores_range(cache, big):
    big.plan.truncate(0.5)
    big.plan.ignore_range()
    result = pull(big.manifest(), options=FAST)
    assert result.files["adapter.safetensors"].read_bytes() == BIG
    applied = big.plan.applied
    assert [a.kind for a in applied] == [FaultKind.TRUNCATE, FaultKind.IGNORE_RANGE]
    assert applied[1].range_header and applied[1].range_header.startswith("bytes=")
    assert leftovers(cache) == []


def test_wrong_content_range_restarts(cache, big):
    big.plan.truncate(0.5)
    big.plan.wrong_content_range(shift=7)
    result = pull(big.manifest(), options=FAST)
    assert result.files["adapter.safetensors"].read_bytes() == BIG
    assert [a.kind for a in big.plan.applied] == [FaultKind.TRUNCATE, FaultKind.WRONG_CONTENT_RANGE]


@pytest.mark.parametrize("methods", [("GET",), ("HEAD",)])
def test_500s_then_success(cache, big, methods):
    if methods == ("HEAD",):  # the metadata call is made when the GET's answer lacks the Hub's commit header
        big.plan.rewrite_headers({"X-Repo-Commit": ""}, methods=("GET",))
    big.plan.fail(500, times=2, methods=methods)
    result = pull(big.manifest(), options=FAST)
    assert result.files["adapter.safetensors"].read_bytes() == BIG
    assert [a.kind for a in big.plan.applied if a.kind is FaultKind.ERROR] == [FaultKind.ERROR, FaultKind.ERROR]


def test_500s_forever_give_a_clear_error(cache, big):
    big.plan.fail(503, times=None)
    with pytest.raises(DownloadError, match="503"):
        pull(with_http_source(big.manifest(), big.resolve_base()), options=FAST)
    assert_clean(cache)


def test_stalling_server_times_out(cache, big):
    big.plan.stall(30, at="mid", times=None)
    opts = FetchOptions(connect_timeout=2, read_timeout=0.5, retries=1, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        pull(big.manifest(), options=opts)
    assert time.monotonic() - start < 10
    assert_clean(cache)


def test_pickle_renamed_safetensors(cache, hub_server):
    payload = pickle.dumps({"weight": list(range(1000))}, protocol=4)
    r = served(hub_server, {"adapter.safetensors": payload}, {"adapter.safetensors": payload})
    with pytest.raises(UnsafeFileError, match="pickle"):
        pull(r.manifest(), options=FAST)
    assert_clean(cache)


def _tensor(begin: int, end: int, dtype: str = "F32") -> dict:
    return {"dtype": dtype, "shape": [(end - begin) // 4], "data_offsets": [begin, end]}


HOSTILE = {
    "size-2^64-1": b"\xff" * 8 + b"{}" + b"\0" * 64,
    "beyond-file": (10_000).to_bytes(8, "little") + b"{}" + b"\0" * 64,
    "overlap": raw_safetensors({"a": _tensor(0, 8), "b": _tensor(4, 12)}, b"\0" * 12),
    "trailing": raw_safetensors({"a": _tensor(0, 8)}, b"\0" * 8 + b"polyglot"),
    "unknown-dtype": raw_safetensors({"a": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_safetensors_headers(cache, hub_server, kind):
    body = HOSTILE[kind]
    r = served(hub_server, {"adapter.safetensors": body}, {"adapter.safetensors": body})
    with pytest.raises(UnsafeFileError):
        pull(r.manifest(), options=FAST)
    assert_clean(cache)


@pytest.mark.parametrize("path", ["../evil.safetensors", "/etc/passwd", "a/../../b", "C:\\x", "\\\\host\\share\\x",
                                  "a//b", "con.json"])
def test_path_traversal_names_are_refused_before_touching_disk(cache, repo, path):
    m = repo.manifest()
    bad = dataclasses.replace(m, files=(FileEntry(path, 4, "a" * 64),))
    with pytest.raises(SchemaError, match="unsafe file path"):
        pull(bad, options=FAST)
    assert repo.plan.applied == []
    assert not cache.exists()


def test_case_collisions_and_pickle_files_are_refused(cache, repo):
    m = repo.manifest()
    with pytest.raises(SchemaError, match="differ only in case"):
        pull(dataclasses.replace(m, files=(FileEntry("A.json", 1, "a" * 64), FileEntry("a.json", 1, "b" * 64))))
    with pytest.raises(SchemaError, match="pickle"):
        pull(dataclasses.replace(m, files=(FileEntry("pytorch_adapter.bin", 1, "a" * 64),)))
    assert not cache.exists()


def test_manifest_pinned_to_a_branch(cache, repo):
    from adapterhub.manifest import manifest_to_dict, parse_manifest

    doc = manifest_to_dict(repo.manifest())
    doc["sources"][0]["revision"] = "main"
    with pytest.raises(SchemaError):  # the schema refuses it on load...
        parse_manifest(doc)
    m = dataclasses.replace(repo.manifest(), sources=(HfSource(repo.repo_id, "main", endpoint=repo.endpoint),))
    with pytest.raises(SchemaError, match="40-hex commit"):  # ...and the store refuses one built in code
        pull(m, options=FAST)
    assert repo.plan.applied == [] and not cache.exists()


def test_unknown_commit_is_not_found(cache, repo):
    unknown = "0123456789" * 4
    m = dataclasses.replace(repo.manifest(), sources=(HfSource(repo.repo_id, unknown, endpoint=repo.endpoint),))
    with pytest.raises(NotFoundError, match="RevisionNotFound|not found"):
        pull(m, options=FAST)
    assert_clean(cache)
