"""A server that wants a token: every refusal on the Hub path names HF_TOKEN, --token and `hf auth login`.

Against our own server on 127.0.0.1 with tokens configured (writes need one; a private repo looks missing
to whoever may not read it, as on the Hub), through the real huggingface_hub client.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.publish_support import sample_adapter
from support.server_fixtures import isolate_from_machine

from adapterhub.cli import main
from adapterhub.errors import AUTH_HINT, AuthenticationError
from adapterhub.registry import init_index, open_index
from adapterhub.server import HubServer, TokenGrant

TOKEN = "team-secret"
REPO = "org/sst2-houlsby"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_from_machine(monkeypatch, tmp_path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HubServer]:
    hub = HubServer(tmp_path / "hub", tokens=[TokenGrant(TOKEN, "org-bot", write=frozenset({"org"}))],
                    socket_timeout=10)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _names_every_way_to_give_a_token(text: str) -> bool:
    return "HF_TOKEN" in text and "--token" in text and "`hf auth login`" in text


def test_the_login_command_named_is_the_one_huggingface_hub_installs() -> None:
    login_cli = re.search(r"`(\S+) auth login`", AUTH_HINT)
    assert login_cli is not None
    scripts = {ep.name for ep in importlib.metadata.distribution("huggingface_hub").entry_points
               if ep.group == "console_scripts"}
    assert login_cli.group(1) in scripts, scripts


def test_publish_without_or_with_a_wrong_token_says_how_to_give_one(capsys, tmp_path, server) -> None:
    adapter = sample_adapter(tmp_path / "adapter")
    index = init_index(tmp_path / "index", "team")
    for extra in ((), ("--token", "wrong")):
        code, out, err = _run(capsys, "publish", adapter, "--repo", REPO, "--endpoint", server.endpoint,
                              "--index", index, *extra)
        assert code == 1 and out == "" and "HTTP 401" in err and "nothing was published" in err, err
        assert _names_every_way_to_give_a_token(err), err
        assert "Unauthorized" not in err.split("(")[0].strip().removeprefix("error:").strip()[:20]
    assert open_index(index).entries("sst2-houlsby") == []
    code, _, err = _run(capsys, "publish", adapter, "--repo", REPO, "--endpoint", server.endpoint, "--index", index,
                        "--token", TOKEN)
    assert code == 0, err


def test_pulling_from_a_private_repo_without_a_token_says_how_to_give_one(capsys, tmp_path, server) -> None:
    adapter = sample_adapter(tmp_path / "adapter")
    index = init_index(tmp_path / "index", "team")
    code, out, err = _run(capsys, "publish", adapter, "--repo", REPO, "--endpoint", server.endpoint, "--index", index,
                          "--token", TOKEN, "--private", "--json")
    assert code == 0, err
    assert json.loads(out)["commit"]
    code, out, err = _run(capsys, "pull", "sst2-houlsby", "--index", index, "--endpoint", server.endpoint)
    assert code == 1 and out == "" and "private" in err and "not found" in err, err
    assert _names_every_way_to_give_a_token(err), err
    with pytest.raises(AuthenticationError):
        from adapterhub.store import pull

        pull("sst2-houlsby", index=index, endpoint=server.endpoint)
    code, out, err = _run(capsys, "pull", "sst2-houlsby", "--index", index, "--endpoint", server.endpoint,
                          "--token", TOKEN, "-q")
    assert code == 0 and (Path(out.strip()) / "adapter.safetensors").is_file(), err


def test_a_public_repo_on_the_same_server_needs_no_token(capsys, tmp_path, server) -> None:
    adapter = sample_adapter(tmp_path / "adapter")
    index = init_index(tmp_path / "index", "team")
    assert _run(capsys, "publish", adapter, "--repo", REPO, "--endpoint", server.endpoint, "--index", index,
                "--token", TOKEN)[0] == 0
    code, out, err = _run(capsys, "pull", "sst2-houlsby", "--index", index, "--endpoint", server.endpoint, "-q")
    assert code == 0 and Path(out.strip()).is_dir(), err
