"""An adversarial Hub: ``pull hf:`` against a server whose listings, configs, weights and redirects are hostile.

Every probe must end in a typed :class:`AdapterHubError` naming the problem and leave no view, no recorded
manifest and no temporary file in the cache. One server per module (the repos are put once); each test
adds its faults to the shared plan, which is cleared after it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.base_fetch_support import no_local_bases
from support.http_faults import Reply
from support.hub_repos import BASE_DIR, BASE_ID, LIBRARY_DIR, PEFT_DIR, files_of
from support.server_fixtures import ADMIN, ADMIN_TOKEN, point_client_at
from support.store_support import leftovers, put_repo, safetensors_bytes

from adapterhub.errors import (
    AdapterHubError,
    DownloadError,
    IntegrityError,
    JSONFormatError,
    NotFoundError,
    SchemaError,
    SizeLimitError,
    UnsafeFileError,
    UnsafePathError,
)
from adapterhub.server import FaultPlan, HubServer
from adapterhub.server.names import parse_repo_ref
from adapterhub.store import pull
from adapterhub.store.base_fetch import fetch_base
from adapterhub.store.hub_derive import MAX_PICKLE
from adapterhub.store.hub_repo import MAX_REPO_FILES

PLAIN = "adapter_config.json"
LFS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubServer, FaultPlan]]:
    if not PEFT_DIR.is_dir():
        pytest.skip(f"reference fixtures missing: {PEFT_DIR}")
    plan = FaultPlan()
    server = HubServer(tmp_path_factory.mktemp("hostile-hub"), tokens=[ADMIN], fault_plan=plan, socket_timeout=10)
    server.start()
    try:
        put_repo(server, BASE_ID, {"config.json": (BASE_DIR / "config.json").read_bytes()})
        put_repo(server, "org/peft", files_of(PEFT_DIR))
        yield server, plan
    finally:
        server.stop()


@pytest.fixture
def hub(hostile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[HubServer, FaultPlan]]:
    server, plan = hostile
    point_client_at(monkeypatch, server.endpoint, tmp_path / "hf-home")
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    plan.clear()
    try:
        yield server, plan
    finally:
        plan.clear()


def refused(server: HubServer, cache: Path, kind: type[AdapterHubError] = AdapterHubError, *,
            ref: str = "hf:org/peft", match: str | None = None, fetched: bool = True) -> AdapterHubError:
    """Pull ``ref``: it must fail with ``kind`` and publish nothing (no view, no recorded manifest, no temp
    file); with ``fetched=False`` not even a blob (refused from the listing alone)."""
    with pytest.raises(kind, match=match) as info:
        pull(ref, endpoint=server.endpoint)
    views = list((cache / "adapters").glob("*/*")) if (cache / "adapters").is_dir() else []
    manifests = list((cache / "hub").rglob("manifests/*.json")) if (cache / "hub").is_dir() else []
    assert (views, manifests, leftovers(cache)) == ([], [], [])
    if not fetched:
        assert not (cache / "blobs").is_dir() or not any((cache / "blobs").iterdir())
    return info.value


def renamed(name: str):
    return lambda item: [{**item, "path": name}]


@pytest.mark.parametrize(("name", "target"), [
    *((name, PLAIN) for name in ["../escape.json", "/etc/passwd", "a\\b.json", "x\x00y", "a/../../b",
                                 "./adapter_config.json", "dir//x", "", "n" * 300, "C:evil", "con",
                                 ".adapterhub-view.json", "sub/.adapterhub-view.json"]),
    ("../escape.safetensors", LFS), ("x\x00y", LFS), (".adapterhub-view.json", LFS)])
def test_hostile_paths_in_the_listing_are_refused_before_any_fetch(hub, tmp_path, target, name):
    server, plan = hub
    plan.rewrite_listing(renamed(name), path=target)
    refused(server, tmp_path / "cache", UnsafePathError, match="before anything is fetched", fetched=False)


@pytest.mark.parametrize("target", [PLAIN, LFS])
@pytest.mark.parametrize("twin", ["same", "case"])
def test_duplicate_paths_in_the_listing(hub, tmp_path, target, twin):
    server, plan = hub
    plan.rewrite_listing(lambda item: [item, {**item, "path": item["path"] if twin == "same" else item["path"].upper()}],
                         path=target)
    refused(server, tmp_path / "cache", UnsafePathError, match="twice" if twin == "same" else "only in case",
            fetched=False)


@pytest.mark.parametrize("target", [PLAIN, LFS])
@pytest.mark.parametrize("size", [-1, (1 << 40) + 1, 1 << 62, "7", 3.0, True, None])
def test_impossible_sizes_in_the_listing(hub, tmp_path, target, size):
    server, plan = hub
    plan.rewrite_listing(lambda item: [{**item, "size": size}], path=target)
    refused(server, tmp_path / "cache", IntegrityError, match="size", fetched=False)


@pytest.mark.parametrize("target", [PLAIN, LFS])
@pytest.mark.parametrize("delta", [1, -1])
def test_sizes_that_disagree_with_the_bytes_served(hub, tmp_path, target, delta):
    server, plan = hub
    plan.rewrite_listing(lambda item: [{**item, "size": item["size"] + delta}], path=target)
    refused(server, tmp_path / "cache", IntegrityError, match=f"{target}.* bytes")


@pytest.mark.parametrize("lfs", [{}, {"oid": None, "sha256": None}, {"oid": "A" * 64, "sha256": "A" * 64},
                                 {"oid": "g" * 64, "sha256": "g" * 64}, {"oid": "ab", "sha256": "ab"}, "x", [1], True])
def test_an_lfs_entry_without_a_valid_sha256(hub, tmp_path, lfs):
    """The client reads the LFS hash from ``lfs.oid`` (``sha256`` is the Hub's copy); neither usable: refused."""
    server, plan = hub
    plan.rewrite_listing(lambda item: [{**item, "lfs": {**item["lfs"], **lfs} if isinstance(lfs, dict) and lfs
                                        else lfs}], path=LFS)
    error = refused(server, tmp_path / "cache", IntegrityError, fetched=False)
    assert "sha256" in str(error) or "cannot read" in str(error)


def test_thousands_of_files_are_refused_from_the_listing(hub, tmp_path):
    server, plan = hub
    plan.rewrite_listing(lambda item: [item, *({**item, "path": f"ckpt/{i}.json"} for i in range(MAX_REPO_FILES))],
                         path=PLAIN)
    refused(server, tmp_path / "cache", SizeLimitError, match="subfolder", fetched=False)


# --- hostile content: the foreign config and the weights ----------------------------------------------


def peft_config(**changes: object) -> bytes:
    cfg = json.loads((PEFT_DIR / PLAIN).read_bytes())
    cfg.update(changes)
    return json.dumps(cfg).encode()


def put_variant(server: HubServer, files: dict[str, bytes]) -> str:
    """A repo holding the PEFT fixture with ``files`` replaced; its reference (one repo per variant)."""
    repo_id = f"org/v{hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:16]}"
    put_repo(server, repo_id, {**files_of(PEFT_DIR), **files})
    return f"hf:{repo_id}"


CATASTROPHIC = r"(\w|\w\w|\.)*\d\d\d"
"""Backtracks exponentially on a module name (``re`` would take years on ``encoder.layer.0.attention.self.query``)."""
CONFIGS = {
    "array": b"[1, 2]", "string": b'"x"', "null": b"null", "number": b"5",
    "deep": b"[" * 100_000 + b"]" * 100_000, "nan": peft_config().replace(b'"lora_alpha": 16', b'"lora_alpha": NaN'),
    "infinity": peft_config().replace(b'"lora_alpha": 16', b'"lora_alpha": 1e400'),
    "huge": peft_config(padding="x" * (5 << 20)),
    "r_string": peft_config(r="8"), "r_float": peft_config(r=8.5), "r_negative": peft_config(r=-1),
    "r_zero": peft_config(r=0), "r_huge": peft_config(r=1 << 40), "r_bool": peft_config(r=True),
    "alpha_string": peft_config(lora_alpha="x"), "alpha_list": peft_config(lora_alpha=[1]),
    "alpha_bool": peft_config(lora_alpha=True), "dropout_string": peft_config(lora_dropout="x"),
    "targets_catastrophic": peft_config(target_modules=CATASTROPHIC),
    "targets_nothing": peft_config(target_modules="nothing"), "targets_empty": peft_config(target_modules=[]),
    "targets_number": peft_config(target_modules=5), "targets_bad_regex": peft_config(target_modules="(("),
    "targets_huge_regex": peft_config(target_modules="a" * 100_000),
    "rank_pattern_catastrophic": peft_config(rank_pattern={CATASTROPHIC: 4}),
    "rank_pattern_value": peft_config(rank_pattern={"query": "4"}),
    "alpha_pattern_value": peft_config(alpha_pattern={"query": [4]}),
    "peft_type_unknown": peft_config(peft_type="NOT_A_METHOD"), "peft_type_number": peft_config(peft_type=5),
    "peft_type_null": peft_config(peft_type=None),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_a_hostile_adapter_config_is_a_typed_refusal(hub, tmp_path, case):
    server, _ = hub
    ref = put_variant(server, {PLAIN: CONFIGS[case]})
    started = time.monotonic()
    error = refused(server, tmp_path / "cache", ref=ref, fetched=case != "huge")
    assert time.monotonic() - started < 10, "a hostile config must not take long to refuse"
    expected = {"deep": JSONFormatError, "nan": JSONFormatError, "infinity": JSONFormatError, "huge": SizeLimitError}
    assert isinstance(error, expected.get(case, SchemaError)), error
    assert PLAIN in str(error) or "/" in str(error)


def library_config(config: dict | None = None, **meta: object) -> bytes:
    doc = json.loads((LIBRARY_DIR / PLAIN).read_bytes())
    doc["config"].update(config or {})
    doc.update(meta)
    return json.dumps(doc).encode()


HEAD = {"config": {"head_type": "classification", "num_labels": 2, "layers": 1}, "name": "ref"}
LIBRARY_CONFIGS = {
    "scaling_string": {PLAIN: library_config({"scaling": "x"})},
    "scaling_bool": {PLAIN: library_config({"scaling": True})},
    "leave_out_strings": {PLAIN: library_config({"leave_out": ["a", 1]})},
    "leave_out_number": {PLAIN: library_config({"leave_out": 5})},
    "reduction_string": {PLAIN: library_config({"reduction_factor": "x"})},
    "lora_r_string": {PLAIN: library_config({"architecture": "lora", "r": "8", "selfattn_lora": True,
                                             "attn_matrices": ["q"]})},
    "lora_r_huge": {PLAIN: library_config({"architecture": "lora", "r": 1 << 40, "attn_matrices": ["q"]})},
    "lora_alpha_list": {PLAIN: library_config({"architecture": "lora", "alpha": [1], "attn_matrices": ["q"]})},
    "prefix_length_huge": {PLAIN: library_config({"architecture": "prefix_tuning", "prefix_length": 1 << 40})},
    "prefix_dropout_string": {PLAIN: library_config({"architecture": "prefix_tuning", "dropout": "x"})},
    "prefix_leave_out_strings": {PLAIN: library_config({"architecture": "prefix_tuning", "leave_out": ["x"]})},
    "architecture_unknown": {PLAIN: library_config({"architecture": "mystery"})},
    "config_not_an_object": {PLAIN: json.dumps({**json.loads(library_config()), "config": [1]}).encode()},
    "head_array": {"head_config.json": b"[1]", "head.safetensors": safetensors_bytes(4)},
    "head_config_number": {"head_config.json": b'{"config": 5}', "head.safetensors": safetensors_bytes(4)},
    "head_type_list": {"head_config.json": json.dumps({"config": {"head_type": ["x"]}}).encode(),
                       "head.safetensors": safetensors_bytes(4)},
    "head_without_weights": {"head_config.json": json.dumps(HEAD).encode()},
}


@pytest.mark.parametrize("case", sorted(LIBRARY_CONFIGS))
def test_a_hostile_adapters_library_config_is_a_typed_refusal(hub, tmp_path, case):
    server, _ = hub
    files = {**files_of(LIBRARY_DIR), **LIBRARY_CONFIGS[case]}
    repo_id = f"org/lib-{case.replace('_', '-')}"
    put_repo(server, repo_id, files)
    error = refused(server, tmp_path / "cache", ref=f"hf:{repo_id}")
    assert isinstance(error, SchemaError | NotFoundError), error


def lying_safetensors(header: object, data: bytes = b"\0" * 64, *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def tensor(dtype: str = "F32", shape: list | None = None, offsets: list | None = None) -> dict:
    return {"dtype": dtype, "shape": [16] if shape is None else shape, "data_offsets": offsets or [0, 64]}


WEIGHTS = {
    "overlapping": {"a": tensor(offsets=[0, 64]), "b": tensor(offsets=[32, 96])},
    "out_of_range": {"a": tensor(offsets=[0, 1 << 40], shape=[1 << 38])},
    "reversed": {"a": tensor(offsets=[64, 0])},
    "unknown_dtype": {"a": tensor(dtype="F13")},
    "shape_overflow": {"a": tensor(shape=[1 << 62, 1 << 62, 4])},
    "negative_shape": {"a": tensor(shape=[-16])},
    "shape_mismatch": {"a": tensor(shape=[17])},
    "header_length_huge": ("huge", 1 << 62),
    "header_length_past_end": ("past", 1 << 20),
    "header_not_json": ("notjson", None),
    "header_not_object": ("array", None),
    "gap": {"a": tensor(offsets=[0, 32], shape=[8]), "b": tensor(offsets=[48, 64], shape=[4])},
}


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_a_weights_file_whose_header_lies_is_refused(hub, tmp_path, case):
    server, _ = hub
    spec = WEIGHTS[case]
    if isinstance(spec, tuple):
        kind, length = spec
        header = {"notjson": b"{not json", "array": b"[1, 2]"}.get(kind, {"a": tensor()})
        body = lying_safetensors(header, length=length)
    else:
        body = lying_safetensors(spec)
    ref = put_variant(server, {LFS: body})
    error = refused(server, tmp_path / "cache", ref=ref)
    assert isinstance(error, UnsafeFileError | IntegrityError), error
    assert LFS in str(error)


# --- redirects and tokens ------------------------------------------------------------------------------


@pytest.fixture
def private_repo(hub) -> str:
    server, _ = hub
    if not server.storage.repo_exists(parse_repo_ref("model", "org", "secret")):
        server.storage.create_repo(parse_repo_ref("model", "org", "secret"), private=True)
        put_repo(server, "org/secret", files_of(PEFT_DIR))
    return "hf:org/secret"


@pytest.mark.parametrize("methods", [("HEAD", "GET"), ("GET",)])
@pytest.mark.parametrize("target", [LFS, PLAIN])
@pytest.mark.parametrize("elsewhere", ["other-port", "other-host"])
def test_a_redirect_to_another_origin_gets_no_token(hub, tmp_path, scripted, private_repo, methods, target, elsewhere):
    """The Hub redirects LFS downloads to a CDN; the user's token goes to the endpoint only, wherever the
    redirect points (another port is another origin; so is another name for the same machine)."""
    server, plan = hub
    body = (PEFT_DIR / target).read_bytes()
    scripted.route("/cdn/file", Reply(body=body))
    location = scripted.url("/cdn/file")
    if elsewhere == "other-host":
        location = location.replace("127.0.0.1", "localhost")
    plan.redirect(location, methods=methods, path=target)
    pulled = pull(private_repo, endpoint=server.endpoint, token=ADMIN_TOKEN)
    assert pulled.files[target].read_bytes() == body  # the bytes still had to match the Hub's hash
    seen = scripted.seen("/cdn/file")
    assert seen and all(h.get("authorization") is None for h in seen), seen


def test_redirected_bytes_that_do_not_match_are_refused(hub, tmp_path, scripted, private_repo):
    server, plan = hub
    scripted.route("/cdn/file", Reply(body=b"\0" * (PEFT_DIR / LFS).stat().st_size))
    plan.redirect(scripted.url("/cdn/file"), path=LFS)
    with pytest.raises(IntegrityError):
        pull(private_repo, endpoint=server.endpoint, token=ADMIN_TOKEN)
    assert all(h.get("authorization") is None for h in scripted.seen())


# --- base fetching (pull --with-base, run) --------------------------------------------------------------

BASE_REPO = "org/hostile-base"
BASE_FILES = {"config.json": (BASE_DIR / "config.json").read_bytes() if BASE_DIR.is_dir() else b"{}",
              "model.safetensors": safetensors_bytes(2048)}


@pytest.fixture
def base_repo(hub, monkeypatch, tmp_path) -> Path:
    """A private base on the hostile server, the user's ``HF_ENDPOINT``; returns the empty HF cache."""
    server, _ = hub
    if not server.storage.repo_exists(parse_repo_ref("model", *BASE_REPO.split("/"))):
        server.storage.create_repo(parse_repo_ref("model", *BASE_REPO.split("/")), private=True)
        put_repo(server, BASE_REPO, BASE_FILES)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    return no_local_bases(monkeypatch, tmp_path, BASE_REPO)


def snapshot_files(hf_cache: Path) -> list[str]:
    return sorted(p.name for p in hf_cache.rglob("snapshots/*/*")) if hf_cache.is_dir() else []


@pytest.mark.parametrize("rewrite", [renamed("../model.safetensors"), renamed("/model.safetensors"),
                                     lambda item: [item, item], lambda item: [{**item, "size": True}]],
                         ids=["dotdot", "absolute", "twice", "bool-size"])
def test_a_hostile_base_listing_is_refused_before_any_download(hub, base_repo, rewrite):
    server, plan = hub
    plan.rewrite_listing(rewrite, path="model.safetensors", repo_id=BASE_REPO)
    with pytest.raises((UnsafePathError, IntegrityError)):
        fetch_base(BASE_REPO, endpoint=server.endpoint, token=ADMIN_TOKEN)
    assert snapshot_files(base_repo) == []


@pytest.mark.parametrize("elsewhere", ["other-port", "other-host"])
def test_a_base_download_redirected_to_another_origin_gets_no_token(hub, base_repo, scripted, elsewhere):
    """``hf_hub_download`` follows the Hub's redirect itself: the client must drop the token on the way."""
    server, plan = hub
    scripted.route("/cdn/model", Reply(body=BASE_FILES["model.safetensors"]))
    location = scripted.url("/cdn/model")
    plan.redirect(location if elsewhere == "other-port" else location.replace("127.0.0.1", "localhost"),
                  path="model.safetensors", repo_id=BASE_REPO)
    fetched = fetch_base(BASE_REPO, endpoint=server.endpoint, token=ADMIN_TOKEN)
    assert (fetched.location.path / "model.safetensors").read_bytes() == BASE_FILES["model.safetensors"]
    seen = scripted.seen("/cdn/model")
    assert seen and all(h.get("authorization") is None for h in seen), seen


# --- the CLI: exit code 1, one clear line, nothing in the cache --------------------------------------------


@pytest.mark.parametrize("case", ["listing", "regex", "weights", "config-size"])
def test_the_cli_refuses_with_exit_code_1(hub, tmp_path, monkeypatch, capsys, case):
    from adapterhub.cli import main

    server, plan = hub
    ref, needle = "hf:org/peft", ""
    if case == "listing":
        plan.rewrite_listing(renamed("../escape.json"), path=PLAIN)
        needle = "../escape.json"
    elif case == "regex":
        ref, needle = put_variant(server, {PLAIN: CONFIGS["targets_catastrophic"]}), "catastrophic backtracking"
    elif case == "weights":
        ref, needle = put_variant(server, {LFS: lying_safetensors(WEIGHTS["overlapping"])}), LFS
    else:
        ref, needle = put_variant(server, {PLAIN: CONFIGS["huge"]}), "larger than"
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    code = main(["pull", ref])
    err = capsys.readouterr().err
    assert code == 1 and needle in err and "Traceback" not in err, err
    cache = tmp_path / "cache"
    assert not list((cache / "adapters").glob("*/*")) if (cache / "adapters").is_dir() else True
    assert leftovers(cache) == []


@pytest.mark.parametrize("name", [".adapterhub-view.json", "nested/.adapterhub-view.json"])
def test_a_repo_file_named_like_the_caches_own_record_is_refused(hub, tmp_path, name):
    server, _ = hub
    ref = put_variant(server, {name: b'{"format": 1, "name": "someone-else", "version": "9.9.9", "files": {}}'})
    refused(server, tmp_path / "cache", UnsafePathError, ref=ref, match="cache's own", fetched=False)


def test_pickle_weights_too_large_to_convert_are_refused_before_download(hub, tmp_path):
    """A pickle is converted in memory, so its size is bounded before a byte of it is fetched."""
    server, plan = hub
    put_repo(server, "org/big-pickle", {PLAIN: (PEFT_DIR / PLAIN).read_bytes(), "adapter_model.bin": b"x" * 64})
    plan.rewrite_listing(lambda item: [{**item, "size": MAX_PICKLE + 1,
                                        **({"lfs": {**item["lfs"], "size": MAX_PICKLE + 1}} if "lfs" in item else {})}],
                         path="adapter_model.bin")
    refused(server, tmp_path / "cache", SizeLimitError, ref="hf:org/big-pickle", match="convert it yourself",
            fetched=False)


# --- revisions in responses ------------------------------------------------------------------------------


@pytest.mark.parametrize("sha", ["main", "abc123", "A" * 40, "0" * 39 + "g", None, 5, "0" * 40])
def test_a_resolved_revision_that_is_not_the_40_hex_commit_is_refused(hub, tmp_path, sha):
    server, plan = hub
    plan.rewrite_info(lambda payload: [{**payload, "sha": sha}], repo_id="org/peft")
    pinned = server.storage.resolve(parse_repo_ref("model", "org", "peft"), "main").oid
    ref = "hf:org/peft" if sha != "0" * 40 else f"hf:org/peft@{pinned}"  # a pinned commit answered for another
    refused(server, tmp_path / "cache", DownloadError if sha != "0" * 40 else IntegrityError, ref=ref,
            fetched=False)


@pytest.mark.parametrize("commit", ["main", "0" * 40, ""])
def test_a_file_served_for_another_commit_is_refused(hub, tmp_path, commit):
    server, plan = hub
    plan.rewrite_headers({"X-Repo-Commit": commit}, path=PLAIN)
    refused(server, tmp_path / "cache", IntegrityError, match="not the pinned")
