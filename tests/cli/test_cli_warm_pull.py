"""The warm ``pull`` answered before click loads (``adapterhub/cli/warm_pull.py``) says exactly what the command says.

The fast path is only sound if, for every form it takes, its output and exit code equal the click command's, and
for every form it does not fully understand it steps aside without printing or writing anything. Both are
checked here form by form, for a registry name (bundled and directory indexes, with dependencies) and for a
Hub reference pinned to a commit; the import probe in ``support/warm_pull.py`` checks that click stays unloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.doc_examples import python_blocks
from support.hub_repos import put_fixture_repos
from support.store_support import manifest_for, safetensors_bytes
from support.warm_pull import PROBE

from adapterhub.cli import main, run_click
from adapterhub.cli.warm_pull import answer_warm_pull, parse_plain_pull
from adapterhub.registry import add_release, init_index, is_local_index
from adapterhub.settings import TRUST_VARIABLES


def both(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[tuple[int | None, str], tuple[int, str]]:
    """(fast path's exit code or None, its stdout), (the click command's exit code, its stdout)."""
    fast = answer_warm_pull(args)
    fast_out = capsys.readouterr().out
    slow = run_click(list(args))
    return (fast, fast_out), (slow, capsys.readouterr().out)


@pytest.fixture
def composed_index(tmp_path: Path) -> Path:
    """A directory index with ``child`` depending on ``parent`` (bytes in the index's mirror)."""
    root = tmp_path / "index"
    index = init_index(root, "test")
    (root / "mirror").mkdir()
    for name, deps in (("parent", None), ("child", [{"name": "parent", "spec": ">=1"}])):
        files = {"adapter.safetensors": safetensors_bytes(64 + len(name)), "adapter_config.json": b'{"r": 4}'}
        for body in files.values():
            (root / "mirror" / hashlib.sha256(body).hexdigest()).write_bytes(body)
        extra = {"dependencies": deps} if deps else {}
        add_release(index, manifest_for(files, [{"type": "bundled"}], name=name, **extra))
    return root


@pytest.mark.parametrize("form", [
    ["pull", "sst2-houlsby"], ["pull", "sst2-houlsby", "-q"], ["pull", "-q", "sst2-houlsby"],
    ["pull", "sst2-houlsby", "--quiet", "--json"], ["pull", "sst2-houlsby", "--json"],
    ["pull", "sst2-houlsby", "--no-deps"], ["pull", "sst2-houlsby", "--offline"],
    ["pull", "sst2-houlsby==1.0.0"], ["pull", "sst2-houlsby>=1,<2", "-q"], ["pull", "sst2-houlsby@1.0.0"],
])
def test_each_plain_form_prints_what_the_command_prints(cache, capsys, form):
    assert run_click(["pull", "sst2-houlsby", "-q"]) == 0  # warm the cache
    capsys.readouterr()
    (fast, fast_out), (slow, slow_out) = both(capsys, form)
    assert fast == slow == 0
    assert fast_out == slow_out and "sst2-houlsby" in fast_out


@pytest.mark.parametrize("extra", [[], ["--json"], ["--no-deps"], ["-q"]])
@pytest.mark.parametrize("index_form", ["separate", "equals", "env"])
def test_a_directory_index_with_dependencies(cache, capsys, composed_index, monkeypatch, extra, index_form):
    given = {"separate": ["--index", str(composed_index)], "equals": [f"--index={composed_index}"], "env": []}
    if index_form == "env":
        monkeypatch.setenv("ADAPTERHUB_INDEX", str(composed_index))
    args = ["pull", "child", *given[index_form], *extra]
    assert run_click(args) == 0
    capsys.readouterr()
    (fast, fast_out), (slow, slow_out) = both(capsys, args)
    assert fast == slow == 0 and fast_out == slow_out
    if not extra:
        assert "(dependency)" in fast_out and fast_out.index("parent") < fast_out.index("child")


def test_a_first_pull_is_left_to_the_command_with_nothing_done_twice(cache, capsys):
    """Filling the cache (even from a local index's mirror) is the command's work: the fast path steps aside
    before it copies, hashes or writes anything, so nothing is done twice."""
    assert answer_warm_pull(["pull", "sst2-houlsby"]) is None
    assert capsys.readouterr().out == ""
    written = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert not [p for p in written if "blobs" in p.parts or "adapters" in p.parts], written
    assert main(["pull", "sst2-houlsby"]) == 0 and "downloaded" in capsys.readouterr().out


def test_a_view_whose_bytes_changed_is_left_to_the_command_which_rebuilds_it(cache, capsys):
    assert main(["pull", "sst2-houlsby", "-q"]) == 0
    view = Path(capsys.readouterr().out.strip())
    head = view / "head.safetensors"  # small: re-hashed on every warm pull
    body = bytearray(head.read_bytes())
    body[-1] ^= 1
    head.chmod(0o644)
    head.write_bytes(bytes(body))
    assert answer_warm_pull(["pull", "sst2-houlsby"]) is None  # checked, found changed, retired
    assert main(["pull", "sst2-houlsby", "-q"]) == 0 and capsys.readouterr().out.strip() == str(view)
    assert answer_warm_pull(["pull", "sst2-houlsby", "-q"]) == 0 and capsys.readouterr().out.strip() == str(view)


@pytest.mark.parametrize("form", [
    [], ["sst2-houlsby"], ["pull"], ["pull", "-h"], ["pull", "--help"], ["--debug", "pull", "sst2-houlsby"],
    ["pull", "sst2-houlsby", "--with-base"], ["pull", "sst2-houlsby", "--token", "t"],
    ["pull", "sst2-houlsby", "--endpoint", "http://127.0.0.1:9"], ["pull", "-r", "adapterhub.lock"],
    ["pull", "sst2-houlsby", "other"], ["pull", "--", "sst2-houlsby"], ["pull", "sst2-houlsby", "-qq"],
    ["pull", "sst2-houlsby", "--index"], ["pull", "sst2-houlsby", "--index", "--json"], ["pull", "--index="],
    ["pull", "sst2-houlsby", "--trust-key", "k.pem"], ["pull", "sst2-houlsby", "--trust-index-signers"],
    ["pull", "sst2-houlsby", "--require-hashes"], ["info", "sst2-houlsby"], ["search", "sst2"],
])
def test_forms_it_does_not_fully_understand_are_left_to_the_command(form):
    assert parse_plain_pull(form) is None


def test_a_path_where_a_name_goes_is_left_to_the_command(tmp_path, monkeypatch):
    (tmp_path / "my-adapter").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_plain_pull(["pull", "my-adapter"]) is None  # cli/args.py explains what to pass instead
    assert parse_plain_pull(["pull", "sst2-houlsby"]) is not None


@pytest.mark.parametrize("variable", TRUST_VARIABLES)
def test_trust_settings_in_the_environment_are_left_to_the_command(variable, monkeypatch):
    monkeypatch.setenv(variable, "1")
    assert parse_plain_pull(["pull", "sst2-houlsby"]) is None


@pytest.fixture
def served(composed_index: Path):
    """``composed_index`` served over http on 127.0.0.1 (its mirror too)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(composed_index)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("given", ["option", "env"])
def test_a_remote_index_is_never_answered_from_its_cached_copy(cache, capsys, monkeypatch, served, composed_index,
                                                               given):
    """Online, a remote index is revalidated: a release published since is the answer, not the cached copy's."""
    args = ["pull", "parent", "-q", *(["--index", served] if given == "option" else [])]
    if given == "env":
        monkeypatch.setenv("ADAPTERHUB_INDEX", served)
    assert run_click(args) == 0
    files = {"adapter.safetensors": safetensors_bytes(99), "adapter_config.json": b'{"r": 4}'}
    for body in files.values():
        (composed_index / "mirror" / hashlib.sha256(body).hexdigest()).write_bytes(body)
    add_release(composed_index, manifest_for(files, [{"type": "bundled"}], name="parent", version="1.1.0"))
    capsys.readouterr()
    assert answer_warm_pull(args) is None
    assert capsys.readouterr().out == ""
    assert main(args) == 0 and capsys.readouterr().out.strip().endswith("1.1.0")


@pytest.mark.parametrize("index", ["http://127.0.0.1:9/index", "https://example.org/index", "hf:datasets/org/registry"])
def test_only_an_index_on_this_machine_counts_as_local(index, tmp_path, monkeypatch):
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    assert not is_local_index(index)
    assert is_local_index(None) and is_local_index(tmp_path) and is_local_index(f"file://{tmp_path}")
    monkeypatch.setenv("ADAPTERHUB_INDEX", index)
    assert not is_local_index(None)


def test_a_miss_or_an_error_is_left_to_the_command_and_reported_once(cache, capsys, tmp_path):
    assert answer_warm_pull(["pull", "no-such-adapter"]) is None
    assert capsys.readouterr().out == ""
    code = main(["pull", "no-such-adapter"])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("no-such-adapter") >= 1 and err.startswith("error:")
    assert not list((cache / "adapters").glob("*")) if (cache / "adapters").exists() else True


def test_a_missing_blob_is_not_answered_and_nothing_is_left_behind(cache, capsys, composed_index):
    """A release whose bytes are neither cached nor in a local mirror needs a download: the command's job."""
    assert run_click(["pull", "parent", "--index", str(composed_index), "-q"]) == 0
    capsys.readouterr()
    for blob in (composed_index / "mirror").iterdir():
        blob.unlink()
    assert answer_warm_pull(["pull", "child", "--index", str(composed_index)]) is None
    assert capsys.readouterr().out == ""
    assert not (cache / "adapters" / "child").exists()
    assert not any((cache / "leases").iterdir()) if (cache / "leases").exists() else True


@pytest.fixture
def repos(hub, cache, monkeypatch):
    found = put_fixture_repos(hub.server)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    return found


def test_a_hub_reference_pinned_to_a_commit_and_only_that(repos, capsys):
    pinned = f"hf:org/peft-lora@{repos.peft}"
    assert answer_warm_pull(["pull", "hf:org/peft-lora"]) is None  # a branch must be asked again
    assert answer_warm_pull(["pull", pinned]) is None  # never pulled: a download
    assert run_click(["pull", "hf:org/peft-lora", "-q"]) == 0
    capsys.readouterr()
    assert answer_warm_pull(["pull", "hf:org/peft-lora@main"]) is None
    assert capsys.readouterr().out == ""
    for extra in ([], ["--json"], ["-q"]):
        (fast, fast_out), (slow, slow_out) = both(capsys, ["pull", pinned, *extra])
        assert fast == slow == 0 and fast_out == slow_out
    assert json.loads(both(capsys, ["pull", pinned, "--json"])[0][1])["reference"] == pinned


def test_a_warm_pull_process_never_imports_click(cache):
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX")}
    env["ADAPTERHUB_CACHE"] = str(cache)
    runs = [subprocess.run([sys.executable, "-c", PROBE, "pull", "sst2-houlsby", *extra], capture_output=True,
                           text=True, env=env, timeout=120) for extra in ([], ["--json"], ["-q"])]
    for proc in runs[1:]:
        assert "LOADED [] 0" in proc.stdout, (proc.stdout, proc.stderr)
    cold_then_help = subprocess.run([sys.executable, "-c", PROBE, "pull", "--help"], capture_output=True, text=True,
                                    env=env, timeout=120)
    assert "'click'" in cold_then_help.stdout  # the probe does see click when the command runs


def test_the_documented_example_runs(cache):
    [block] = [b for b in python_blocks("pull-and-cache.md") if "pull_cached" in b]
    exec(compile(block, "docs/pull-and-cache.md", "exec"), {})  # noqa: S102 - our own documentation
