"""Cross-check against a Hub-compatible server nobody here wrote: olah (PyPI ``olah``, MIT).

olah 0.5.4 can serve local git repositories as Hub repos with no network (``mirrors-path`` plus
``[accessibility] offline = true``; only a branch named ``main`` is served). The same real
``hf_hub_download`` that our tests point at ``adapterhub.server`` must fetch the same bytes from olah,
by branch and by commit, and our server must give the client the same file for the same content.

olah pins its own dependencies, so it lives in a separate virtualenv; point ``ADAPTERHUB_OLAH`` at its
``olah-cli`` (or put it on PATH)::

    python -m venv /work/venv-olah && /work/venv-olah/bin/pip install olah==0.5.4
    ADAPTERHUB_OLAH=/work/venv-olah/bin/olah-cli pytest tests/server/test_olah_crosscheck.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from support.server_fixtures import ADMIN, ADMIN_TOKEN, point_client_at

from adapterhub.server import serve_in_thread

pytestmark = pytest.mark.network_local

OLAH_ENV = "ADAPTERHUB_OLAH"
REPO = "acme/crosscheck"


def _olah_cli() -> str | None:
    configured = os.environ.get(OLAH_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("olah-cli")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def files() -> dict[str, bytes]:
    return {
        "adapter_model.safetensors": os.urandom(200_000),
        "adapter_config.json": b'{"peft_type": "LORA", "r": 4}\n',
        "sub/notes.txt": b"nested file\n",
    }


@pytest.fixture
def olah(tmp_path: Path, files: dict[str, bytes]) -> Iterator[tuple[str, str]]:
    """olah serving a one-commit git repo offline; yields (endpoint, commit id)."""
    cli = _olah_cli()
    if cli is None:
        pytest.skip(
            f"olah not found: set {OLAH_ENV} to an olah-cli executable or put olah-cli on PATH "
            "(python -m venv VENV && VENV/bin/pip install olah==0.5.4)"
        )
    if shutil.which("git") is None:
        pytest.skip("git is needed to build the repository olah serves")
    repo_dir = tmp_path / "mirrors" / "models" / REPO
    repo_dir.mkdir(parents=True)
    _git(repo_dir, "init", "-q", "-b", "main")  # olah serves only a branch called main
    for name, data in files.items():
        (repo_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / name).write_bytes(data)
    _git(repo_dir, "add", "-A")
    _git(repo_dir, "commit", "-q", "-m", "initial")
    commit = _git(repo_dir, "rev-parse", "HEAD")

    port = _free_port()
    config = tmp_path / "olah.toml"
    config.write_text(
        "[basic]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'repos-path = "{tmp_path / "olah-cache"}"\n'
        f'mirrors-path = ["{tmp_path / "mirrors"}"]\n'
        f'mirror-netloc = "127.0.0.1:{port}"\n'
        f'mirror-lfs-netloc = "127.0.0.1:{port}"\n'
        "\n[accessibility]\noffline = true\n"
    )
    log = (tmp_path / "olah.log").open("wb")
    proc = subprocess.Popen([cli, "-c", str(config)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"olah exited with {proc.returncode}:\n{(tmp_path / 'olah.log').read_text()[-3000:]}"
                )
            try:
                if requests.head(f"{endpoint}/{REPO}/resolve/main/adapter_config.json", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"olah did not answer within 30 s:\n{(tmp_path / 'olah.log').read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield endpoint, commit
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_olah_serves_a_git_repo_to_the_real_client(
    olah: tuple[str, str], files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, commit = olah
    point_client_at(monkeypatch, endpoint, tmp_path / "home")
    for revision in ("main", commit):
        for name, data in files.items():
            path = hf_hub_download(
                REPO, name, revision=revision, endpoint=endpoint, cache_dir=tmp_path / f"cache-{revision[:8]}"
            )
            assert _sha(path) == hashlib.sha256(data).hexdigest(), (revision, name)
            assert f"snapshots/{commit}/" in Path(path).as_posix()


def test_same_client_same_bytes_from_olah_and_adapterhub(
    olah: tuple[str, str], files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    olah_endpoint, olah_commit = olah
    with serve_in_thread(tmp_path / "ours", tokens=[ADMIN]) as ours:
        point_client_at(monkeypatch, ours, tmp_path / "home")
        api = HfApi(endpoint=ours, token=ADMIN_TOKEN)
        api.create_repo(REPO)
        ops = [CommitOperationAdd(name, data) for name, data in files.items()]
        our_commit = api.create_commit(REPO, ops, commit_message="same files").oid
        for name in files:
            theirs = hf_hub_download(
                REPO, name, revision=olah_commit, endpoint=olah_endpoint, cache_dir=tmp_path / "a"
            )
            mine = hf_hub_download(REPO, name, revision=our_commit, endpoint=ours, cache_dir=tmp_path / "b")
            assert _sha(theirs) == _sha(mine), name
        # Both announce the same size and a commit id on HEAD; ETags differ by design (olah: git
        # blob sha1, ours: sha256 so the client's blob name is the content address).
        name = "adapter_model.safetensors"
        theirs_head = requests.head(f"{olah_endpoint}/{REPO}/resolve/main/{name}", timeout=10).headers
        mine_head = requests.head(f"{ours}/{REPO}/resolve/main/{name}", timeout=10).headers
        assert theirs_head["content-length"] == mine_head["content-length"] == str(len(files[name]))
        assert theirs_head["x-repo-commit"] == olah_commit and mine_head["x-repo-commit"] == our_commit
        assert mine_head["etag"].strip('"') == hashlib.sha256(files[name]).hexdigest()
