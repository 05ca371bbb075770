"""Where a Hub token may go: only to endpoints the user configured, never in clear text across a network.

Two recording servers on 127.0.0.1 play "the user's endpoint" and "someone else's": a manifest, an
index config or a redirect names the stranger, and the test checks which requests carried
``Authorization``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import constants
from support.http_faults import Reply, ScriptedServer, redirect
from support.store_support import dir_with, manifest_for, safetensors_bytes, sha

from adapterhub.manifest import MANIFEST_FILENAME, manifest_to_dict
from adapterhub.registry import add_release, init_index, open_index
from adapterhub.store import HttpSource, LocalDirSource, pull

pytestmark = pytest.mark.network_local

SECRET = "hf_secret_token_for_tests"
WEIGHTS = safetensors_bytes(64)
FILES = {"adapter.safetensors": WEIGHTS}


@pytest.fixture
def hf_token(cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``HF_TOKEN`` set as a user would; no token file of this machine is read."""
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_ENDPOINT", "ADAPTERHUB_TOKEN_ENDPOINTS", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return SECRET


@pytest.fixture
def stranger(scripted: ScriptedServer) -> ScriptedServer:
    return scripted


@pytest.fixture
def mine(scripted_other: ScriptedServer) -> ScriptedServer:
    return scripted_other


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    return dir_with(tmp_path / "good", FILES)


def auth_headers(server: ScriptedServer) -> list[str | None]:
    return [h.get("authorization") for h in server.seen()]


def hf_manifest(endpoint: str | None):
    source = {"type": "hf", "repo_id": "org/toy", "revision": "a" * 40}
    if endpoint:
        source["endpoint"] = endpoint
    return manifest_for(FILES, [source])


def test_a_manifest_endpoint_never_receives_the_token(hf_token, stranger, good_dir):
    from adapterhub.store.sources import sources_for

    manifest = hf_manifest(stranger.origin)
    pulled = pull(manifest, sources=sources_for(manifest) + [LocalDirSource(good_dir)])
    assert pulled.files["adapter.safetensors"].read_bytes() == WEIGHTS
    assert stranger.seen(), "the stranger's endpoint was never asked"
    assert auth_headers(stranger) == [None] * len(stranger.seen())


def test_the_endpoint_the_user_configured_does_receive_it(hf_token, mine, good_dir, monkeypatch):
    """The positive control: the same request to HF_ENDPOINT carries the token (so the test above can fail)."""
    monkeypatch.setenv("HF_ENDPOINT", mine.origin)
    from adapterhub.store.sources import sources_for

    manifest = hf_manifest(mine.origin)
    pull(manifest, sources=sources_for(manifest) + [LocalDirSource(good_dir)])
    assert f"Bearer {SECRET}" in auth_headers(mine)


def test_an_index_config_endpoint_never_receives_the_token(hf_token, stranger, tmp_path):
    index = init_index(tmp_path / "index", "team")
    config = json.loads((index / "config.json").read_text())
    config["artifacts"] = {"hf_endpoint": stranger.origin, "mirrors": ["bundled"]}
    (index / "config.json").write_text(json.dumps(config))
    (index / "mirror").mkdir()
    (index / "mirror" / sha(WEIGHTS)).write_bytes(WEIGHTS)
    add_release(index, hf_manifest(None))
    pulled = pull("toy-adapter", index=str(index))
    assert pulled.files["adapter.safetensors"].read_bytes() == WEIGHTS
    assert stranger.seen(), "the index's endpoint was never asked"
    assert auth_headers(stranger) == [None] * len(stranger.seen())


def test_a_redirect_to_another_origin_drops_the_token(hf_token, mine, stranger, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", mine.origin)
    mine.route("/r/adapter.safetensors", redirect("/same/adapter.safetensors"))
    mine.route("/same/adapter.safetensors", redirect(stranger.url("/f/adapter.safetensors")))
    stranger.route("/f/adapter.safetensors", Reply(body=WEIGHTS))
    pulled = pull(manifest_for(FILES), sources=[HttpSource(mine.url("/r/"))])
    assert pulled.files["adapter.safetensors"].read_bytes() == WEIGHTS
    assert auth_headers(mine) == [f"Bearer {SECRET}"] * 2  # same origin: kept across the first redirect
    assert auth_headers(stranger) == [None]


def test_the_http_index_sends_the_token_only_to_a_configured_origin(hf_token, mine, stranger, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_TOKEN_ENDPOINTS", mine.origin)
    config = json.dumps({"index_format": "1.0", "name": "served"}).encode()
    for server in (mine, stranger):
        server.route("/config.json", Reply(body=config))
        open_index(server.origin + "/", cache_dir=tmp_path / server.origin[-5:]).config  # noqa: B018
    assert auth_headers(mine) == [f"Bearer {SECRET}"]
    assert auth_headers(stranger) == [None]


@pytest.mark.parametrize(("endpoint", "url", "allowed"), [
    ("https://hub.example", "https://hub.example/org/x/resolve/abc/f", True),
    ("https://hub.example", "https://hub.example:443/f", True),
    ("https://hub.example", "https://hub.example:8443/f", False),  # another port is another origin
    ("https://hub.example", "http://hub.example/f", False),  # another scheme too
    ("https://hub.example", "https://cdn.example/f", False),
    ("http://hub.internal:8080", "http://hub.internal:8080/f", False),  # clear text over a network
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/f", True),
    ("http://localhost:8080", "http://localhost:8080/f", True),
    ("http://[::1]:8080", "http://[::1]:8080/f", True),
    ("https://hub.example", "file:///etc/passwd", False),
])
def test_token_scope(monkeypatch, endpoint, url, allowed):
    from adapterhub.transport import TokenScope

    for name in ("HF_ENDPOINT", "ADAPTERHUB_TOKEN_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    scope = TokenScope.configured([endpoint])
    assert (scope.refusal(url) is None) is allowed
    assert (scope.token_for(url, "tok") == "tok") is allowed
    assert TokenScope.configured().token_for(url, "tok") is None or url.startswith("https://huggingface.co")


def test_publish_refuses_to_send_a_token_in_clear_text(hf_token, tmp_path):
    from adapterhub.errors import InsecureTokenError
    from adapterhub.publish import publish_to_hub

    release = tmp_path / "release"
    release.mkdir()
    (release / "adapter.safetensors").write_bytes(WEIGHTS)
    (release / MANIFEST_FILENAME).write_text(json.dumps(manifest_to_dict(manifest_for(FILES))))
    with pytest.raises(InsecureTokenError, match="clear text"):
        publish_to_hub(release, "org/toy", endpoint="http://adapterhub-test.invalid")
