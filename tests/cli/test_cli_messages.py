"""Messages that lead to the fix: a path where a name or text goes, Hub repo ids, typos, yank, init.

Each error names what was wrong and the form that works; none of these need a model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import pytest
from support.manifest_samples import manifest_with

from adapterhub.cli import cli, main
from adapterhub.cli.args import name_argument, names_argument, refuse_file_as_text
from adapterhub.errors import ArgumentKindError, InvalidNameError
from adapterhub.manifest import parse_manifest
from adapterhub.registry import add_release, init_index, open_index, resolve
from adapterhub.registry.suggest import close_names, edit_distance, summary_names


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    root = init_index(tmp_path / "idx", "msg-test")
    for name in ("sst2-houlsby", "sst2-lora", "sst2-pfeiffer", "mnli-houlsby"):
        add_release(root, parse_manifest(manifest_with(name, "1.0.0")))
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# --- a file where a text or a name goes -------------------------------------------------------------


def test_run_refuses_a_text_that_names_a_file_and_points_to_file(capsys, tmp_path, monkeypatch, index_dir):
    monkeypatch.chdir(tmp_path)
    Path("reviews.txt").write_text("great movie\n")
    code, out, err = run(capsys, "run", "sst2-houlsby", "reviews.txt", "--index", index_dir)
    assert code == 2 and out == ""
    assert "reviews.txt" in err and "--file reviews.txt" in err and "stdin" in err


def test_run_refuses_a_file_as_the_adapter_and_points_to_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("reviews.txt").write_text("great movie\n")
    code, out, err = run(capsys, "run", "./reviews.txt", "hello")
    assert code == 2 and out == "" and "--file ./reviews.txt" in err and "cannot parse" not in err
    Path("ad").mkdir()
    Path("ad/adapterhub.json").write_text("{}")
    code, _, err = run(capsys, "run", "ad/adapterhub.json", "hello")
    assert code == 2 and "takes its directory" in err and "'ad'" in err


@pytest.mark.parametrize("args", [("pull", "{}"), ("info", "{}"), ("verify", "{}"), ("cache", "ls", "{}"),
                                  ("cache", "rm", "{}"), ("index", "yank", "{}", "1.0.0", "--index", "."),
                                  ("run", "{}", "hello")])
def test_every_name_positional_refuses_an_existing_file(capsys, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("x")
    code, _, err = run(capsys, *(a.format("notes.txt") for a in args))
    assert code == 2 and "'notes.txt' is a local file" in err, err


def test_a_directory_as_a_name_says_what_to_do_with_it(capsys, tmp_path, monkeypatch, index_dir):
    monkeypatch.chdir(tmp_path)
    Path("my-adapter").mkdir()
    Path("my-adapter/adapterhub.json").write_text("{}")
    code, _, err = run(capsys, "pull", "./my-adapter")
    assert code == 2 and "adapter directory" in err
    assert "adapterhub run ./my-adapter" in err and "publish ./my-adapter --to" in err
    code, _, err = run(capsys, "info", "my-adapter/")
    assert code == 2 and "adapterhub validate my-adapter/" in err
    code, _, err = run(capsys, "pull", index_dir)
    assert code == 2 and f"--index {index_dir}" in err
    Path("peft-out").mkdir()
    Path("peft-out/adapter_config.json").write_text("{}")
    code, _, err = run(capsys, "pull", "peft-out/")
    assert code == 2 and "adapterhub init peft-out/" in err


def test_a_plain_name_stays_a_name_even_if_such_a_file_exists(capsys, tmp_path, monkeypatch, index_dir):
    monkeypatch.chdir(tmp_path)
    Path("sst2-houlsby").write_text("not an adapter")
    code, out, err = run(capsys, "info", "sst2-houlsby", "--index", index_dir)
    assert code == 0 and "sst2-houlsby 1.0.0" in out, err


def test_every_text_or_name_positional_is_checked():
    """The class, not the examples: a new command with a name or text positional must be checked too."""
    free_text = {("search", "query"), ("yank", "version")}  # no file form to point to
    free_text |= {("verify", "location"), ("trust", "location")}  # an index directory or URL: a path is right

    def walk(group: click.Group, path: tuple[str, ...] = ()):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from walk(cmd, (*path, name))
            else:
                yield (*path, name), cmd

    for path, cmd in walk(cli):
        for param in cmd.params:
            if isinstance(param, click.Argument) and not isinstance(param.type, click.Path):
                checked = getattr(param.callback, "checks_paths", False)
                assert checked or (path[-1], param.name) in free_text, (path, param.name)


def test_the_checks_as_functions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("f.txt").write_text("x")
    assert refuse_file_as_text(("hello", "-")) == ("hello", "-")
    with pytest.raises(ArgumentKindError):
        refuse_file_as_text(("hello", "f.txt"))
    assert names_argument("lock")(None, None, ("a", "b>=1")) == ("a", "b>=1")
    with pytest.raises(ArgumentKindError):
        names_argument("lock")(None, None, ("a", "f.txt"))
    check = name_argument("pull", "REQUIREMENT")
    assert check(None, None, "f>=1") == "f>=1" and check(None, None, None) is None
    with pytest.raises(ArgumentKindError) as info:
        check(None, None, "f.txt")
    assert info.value.exit_code == 2


# --- a Hub repo id where an index name goes ---------------------------------------------------------


def test_a_hub_repo_id_is_explained(capsys, index_dir):
    code, _, err = run(capsys, "pull", "org/repo", "--index", index_dir)
    assert code == 1 and "Hugging Face Hub repository id" in err and "cannot parse" not in err
    assert "adapterhub pull hf:org/repo" in err
    code, _, err = run(capsys, "run", "org/repo", "hello", "--index", index_dir)
    assert code == 1 and "Hub repository id" in err and "hf:org/repo" in err
    with pytest.raises(InvalidNameError, match="Hub repository id"):
        resolve(open_index(index_dir), "some-org/some-repo@main")


def test_a_missing_path_is_called_a_path(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "pull", "./nowhere")
    assert code == 1 and "looks like a file path" in err
    code, _, err = run(capsys, "run", "./nowhere", "hello")
    assert code == 1 and "no such adapter directory" in err


# --- typos: close names from the index ------------------------------------------------------------


def test_a_typo_gets_close_names_from_the_index(capsys, index_dir):
    for typo, meant in (("sst2-houlby", "sst2-houlsby"), ("sst2-loar", "sst2-lora"), ("sst2-pfeifer", "sst2-pfeiffer")):
        for cmd in ("info", "pull"):
            code, _, err = run(capsys, cmd, typo, "--index", index_dir)
            assert code == 1 and f"did you mean {meant}" in err, (cmd, err)
    code, _, err = run(capsys, "info", "zzzz-nothing-like-it", "--index", index_dir)
    assert code == 1 and "did you mean" not in err and "adapterhub search" in err


def test_cache_commands_suggest_cached_names(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    assert run(capsys, "pull", "sst2-houlsby", "-q")[0] == 0  # from the bundled mirror
    code, out, err = run(capsys, "verify", "sst2-houlby")
    assert code == 1 and "nothing cached matches sst2-houlby" in err and "did you mean sst2-houlsby" in err
    for args in (("cache", "ls", "sst2-houlby"), ("cache", "rm", "sst2-houlby")):
        code, out, _ = run(capsys, *args)
        assert code == 0 and "did you mean sst2-houlsby" in out, args
    code, out, _ = run(capsys, "verify", "sst2-houlsby")
    assert code == 0 and "1 view(s): ok" in out


def test_search_without_results_suggests_names(capsys, index_dir):
    code, out, _ = run(capsys, "search", "sst2-houlby", "--index", index_dir)
    assert code == 0 and "(no results)" in out and "did you mean sst2-houlsby" in out
    code, out, _ = run(capsys, "search", "sst2-houlby", "--index", index_dir, "--json")
    assert code == 0 and json.loads(out) == []


def test_close_names_covers_each_kind_of_typo():
    names = ["sst2-houlsby", "sst2-lora", "sst2-pfeiffer", "mnli-houlsby", "cola-lora"]
    assert close_names("sst2-houlby", names) == ["sst2-houlsby"]     # deletion
    assert close_names("sst2-houlsbyy", names) == ["sst2-houlsby"]   # insertion
    assert close_names("sst2-houlsbi", names) == ["sst2-houlsby"]    # substitution
    assert close_names("sst2-lroa", names) == ["sst2-lora"]          # transposition
    assert close_names("sst2-hulsbi", names) == ["sst2-houlsby"]     # two edits
    assert close_names("SST2_Houlby", names) == ["sst2-houlsby"]     # normalised first
    assert close_names("sst2-houlsby", names) == []                  # an exact name is no suggestion
    assert close_names("zzzz-qqqq", names) == []
    assert edit_distance("abcd", "abdc", 2) == 1 and edit_distance("abcd", "wxyz", 2) == 3


def test_summary_names_ignore_quoted_text_in_descriptions():
    data = (b'{"description":"say \\"name\\":\\"fake\\" here","name":"real-one","version":"1"}\n'
            b'{"name":"second","version":"1"}\n')
    assert summary_names(data) == ["real-one", "second"]


def test_suggestions_are_fast_on_a_100k_index():
    """benchmarks/bench_registry.py's names: very alike, the hard case for any pre-filter."""
    tasks = ["sst2", "mnli", "qnli", "cola", "squad", "conll2003", "imdb", "boolq"]
    names = {f"adapter-{i:06d}-{tasks[i % len(tasks)]}" for i in range(100_000)}
    worst = 0.0
    for typo, meant in (("adapter-000123-cloa", "adapter-000123-cola"), ("adaptr-000123-cola", "adapter-000123-cola"),
                        ("adapter-0g0123-coal", "adapter-000123-cola"), ("zzzzzz-unknown-name", None)):
        start = time.perf_counter()
        found = close_names(typo, names)
        worst = max(worst, time.perf_counter() - start)
        assert (meant in found) if meant else found == []
    assert worst < 3.0, worst  # about 0.3 s on one core; generous for a shared CI machine


# --- yank --undo and the interactive init ----------------------------------------------------------


def test_yank_needs_a_reason_and_undo_needs_none(capsys, index_dir):
    code, _, err = run(capsys, "index", "yank", "sst2-lora", "1.0.0", "--index", index_dir)
    assert code == 2 and "--reason" in err
    assert run(capsys, "index", "yank", "sst2-lora", "1.0.0", "--index", index_dir, "--reason", "broken")[0] == 0
    assert open_index(index_dir).entries("sst2-lora")[0].yanked == "broken"
    code, out, err = run(capsys, "index", "yank", "sst2-lora", "1.0.0", "--index", index_dir, "--undo")
    assert code == 0 and "unyanked" in out, err
    assert not open_index(index_dir).entries("sst2-lora")[0].is_yanked
    code, _, err = run(capsys, "index", "yank", "sst2-lora", "1.0.0", "--index", index_dir, "--undo", "--reason", "x")
    assert code == 2 and "--undo takes no --reason" in err
