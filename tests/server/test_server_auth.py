"""Who may write and read what on the server, with the real ``huggingface_hub`` client over HTTP.

Writes need a token unless the operator opts out; a token writes only its namespaces; a private
repository answers every endpoint exactly like a missing one to anyone not allowed to read it; bad
request bodies are 400s in the Hub's error shape, never 500s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from support.server_fixtures import point_client_at, raw_request

from adapterhub.server import HubServer, TokenFileError, TokenGrant, load_token_file, serve_in_thread

pytestmark = pytest.mark.network_local

ADMIN = TokenGrant.admin_token("admin-token-0123456789")
ALICE = TokenGrant("alice-token-0123456789", "alice", write=frozenset({"alice", "acme"}))
BOB = TokenGrant("bob-token-0123456789", "bob", write=frozenset({"bob"}))
CAROL = TokenGrant("carol-token-0123456789", "carol", read=frozenset({"acme/secret"}))


def _status(error: BaseException) -> int:
    return error.response.status_code  # type: ignore[attr-defined]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serve_in_thread(tmp_path / "root", tokens=[ADMIN, ALICE, BOB, CAROL]) as endpoint:
        point_client_at(monkeypatch, endpoint, tmp_path / "home")
        yield endpoint


def _api(endpoint: str, grant: TokenGrant | None) -> HfApi:
    return HfApi(endpoint=endpoint, token=grant.token if grant else False)


def test_writes_need_a_token_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a server started without tokens accepted anonymous writes."""
    with serve_in_thread(tmp_path / "root") as endpoint:
        point_client_at(monkeypatch, endpoint, tmp_path / "home")
        with pytest.raises(HfHubHTTPError) as refused:
            _api(endpoint, None).create_repo("acme/open")
        assert _status(refused.value) == 401
        status, headers, body = raw_request(endpoint, "POST", "/api/repos/create", body=b'{"name": "acme/open"}')
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert "token" in json.loads(body)["error"]
        assert not (tmp_path / "root" / "repos").exists()


def test_anonymous_writes_only_when_the_operator_opts_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread(tmp_path / "root", allow_anonymous_writes=True) as endpoint:
        point_client_at(monkeypatch, endpoint, tmp_path / "home")
        api = _api(endpoint, None)
        api.create_repo("anyone/lab")
        commit = api.create_commit("anyone/lab", [CommitOperationAdd("a.txt", b"a")], commit_message="m")
        assert api.model_info("anyone/lab").sha == commit.oid


def test_a_token_writes_only_its_namespaces(server: str) -> None:
    """Regression: any accepted token could create and commit in every namespace."""
    alice, bob = _api(server, ALICE), _api(server, BOB)
    alice.create_repo("acme/shared")
    alice.create_commit("acme/shared", [CommitOperationAdd("a.txt", b"a")], commit_message="alice")
    bob.create_repo("bob/own")
    for attempt in (
        lambda: bob.create_repo("acme/other"),
        lambda: bob.create_commit("acme/shared", [CommitOperationAdd("b.txt", b"b")], commit_message="bob"),
        lambda: _api(server, CAROL).create_repo("acme/carol"),  # read scopes never write
    ):
        with pytest.raises(HfHubHTTPError) as refused:
            attempt()
        assert _status(refused.value) == 403
    assert sorted(alice.list_repo_files("acme/shared")) == ["a.txt"]
    admin = _api(server, ADMIN)
    admin.create_repo("bob/by-admin")  # an admin writes everywhere
    admin.create_commit("acme/shared", [CommitOperationAdd("c.txt", b"c")], commit_message="admin")
    assert sorted(alice.list_repo_files("acme/shared")) == ["a.txt", "c.txt"]
    assert alice.whoami()["name"] == "alice"
    assert {org["name"] for org in alice.whoami()["orgs"]} == {"alice", "acme"}


def test_an_unknown_token_is_refused_even_for_reads(server: str) -> None:
    _api(server, ALICE).create_repo("acme/public")
    for headers in ({"Authorization": "Bearer not-a-known-token"}, {"Authorization": "Basic abc"}):
        status, response_headers, _ = raw_request(server, "GET", "/api/models/acme/public", headers=headers)
        assert status == 401 and response_headers["x-error-message"] == "Invalid credentials in Authorization header"
    assert raw_request(server, "GET", "/api/models/acme/public")[0] == 200  # no token: public reads are open
    assert raw_request(server, "GET", "/api/whoami-v2")[0] == 401


def _private_repo(server: str) -> str:
    alice = _api(server, ALICE)
    alice.create_repo("acme/secret", private=True)
    return alice.create_commit(
        "acme/secret", [CommitOperationAdd("w.bin", b"weights"), CommitOperationAdd("d/x.txt", b"x")],
        commit_message="private",
    ).oid


READS = [
    ("GET", "/api/models/{repo}"),
    ("GET", "/api/models/{repo}/revision/main"),
    ("GET", "/api/models/{repo}/tree/main"),
    ("GET", "/api/models/{repo}/refs"),
    ("GET", "/api/models/{repo}/commits/main"),
    ("HEAD", "/{repo}/resolve/main/w.bin"),
    ("GET", "/{repo}/resolve/main/w.bin"),
    ("POST", "/api/models/{repo}/paths-info/main"),
]


def test_a_private_repo_looks_missing_to_whoever_may_not_read_it(server: str, tmp_path: Path) -> None:
    """Regression: a private=true repository's files, info and tree were served to anyone."""
    commit = _private_repo(server)
    for who in (None, BOB):
        headers = {"Authorization": f"Bearer {who.token}"} if who else {}
        for method, template in READS:
            body = b"paths=w.bin" if method == "POST" else None
            hidden = raw_request(server, method, template.format(repo="acme/secret"), body=body, headers=headers)
            missing = raw_request(server, method, template.format(repo="acme/ghost"), body=body, headers=headers)
            assert hidden[0] == missing[0] == 404, (who, method, template)
            assert hidden[1]["x-error-code"] == missing[1]["x-error-code"] == "RepoNotFound"
            assert hidden[2].replace(b"secret", b"ghost") == missing[2]  # nothing tells the two apart
            assert b"weights" not in hidden[2] and commit.encode() not in hidden[2]
        api = _api(server, who)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info("acme/secret")
        with pytest.raises(RepositoryNotFoundError):
            list(api.list_repo_tree("acme/secret"))
        with pytest.raises(RepositoryNotFoundError):
            api.get_paths_info("acme/secret", ["w.bin"])
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download("acme/secret", "w.bin", endpoint=server, token=who.token if who else False,
                            cache_dir=tmp_path / "c")
        assert not api.repo_exists("acme/secret")
    # Writing into it without read access is the same 404; creating it again is a 403, not a 409.
    with pytest.raises(RepositoryNotFoundError):
        _api(server, BOB).create_commit("acme/secret", [CommitOperationAdd("b", b"b")], commit_message="m")
    with pytest.raises(HfHubHTTPError) as taken:
        _api(server, BOB).create_repo("acme/secret")
    assert _status(taken.value) == 403


def test_a_private_repo_is_read_by_its_writers_read_scopes_and_admins(server: str, tmp_path: Path) -> None:
    commit = _private_repo(server)
    for who in (ALICE, CAROL, ADMIN):
        api = _api(server, who)
        assert api.model_info("acme/secret").sha == commit
        assert api.model_info("acme/secret").private is True
        assert {e.path for e in api.list_repo_tree("acme/secret", recursive=True)} == {"w.bin", "d", "d/x.txt"}
        assert [p.path for p in api.get_paths_info("acme/secret", ["w.bin"])] == ["w.bin"]
        local = hf_hub_download("acme/secret", "w.bin", revision=commit, endpoint=server, token=who.token,
                                cache_dir=tmp_path / who.user)
        assert Path(local).read_bytes() == b"weights"
    with pytest.raises(HfHubHTTPError) as refused:  # carol reads it but may not write it
        _api(server, CAROL).create_commit("acme/secret", [CommitOperationAdd("c", b"c")], commit_message="m")
    assert _status(refused.value) == 403


HOSTILE_LINES = {
    "deep nesting": b'{"key": "header", "value": {"summary": "x", "n": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    "lone surrogate": b'{"key": "header", "value": {"summary": "\\ud800"}}',
    "surrogate key": b'{"key": "header", "value": {"summary": "s", "\\udfff": 1}}',
    "overflowing number": b'{"key": "header", "value": {"summary": "s", "n": 1e999}}',
    "NaN": b'{"key": "header", "value": {"summary": "s", "n": NaN}}',
    "duplicate key": b'{"key": "header", "key": "file", "value": {"summary": "s"}}',
    "invalid UTF-8": b'{"key": "header", "value": {"summary": "\xff"}}',
    "not JSON": b"{nope",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_LINES))
def test_malformed_commit_lines_are_400_in_the_hubs_error_shape(
    server: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: deep JSON and lone surrogates in a commit line were answered 500."""
    alice = _api(server, ALICE)
    alice.create_repo("acme/target")
    head = alice.create_commit("acme/target", [CommitOperationAdd("a", b"a")], commit_message="seed").oid
    auth = {"Authorization": f"Bearer {ALICE.token}"}
    file_line = b'{"key": "file", "value": {"path": "b", "content": "Yg==", "encoding": "base64"}}'
    for body in (HOSTILE_LINES[kind] + b"\n" + file_line + b"\n", b'{"key": "header", "value": {"summary": "s"}}\n'
                 + HOSTILE_LINES[kind].replace(b'"header"', b'"file"', 1) + b"\n"):
        with caplog.at_level(logging.ERROR, logger="adapterhub.server"):
            status, headers, answer = raw_request(server, "POST", "/api/models/acme/target/commit/main",
                                                  body=body, headers=auth)
        assert status == 400, (kind, answer)
        assert isinstance(json.loads(answer)["error"], str) and headers["x-error-message"]
    assert alice.model_info("acme/target").sha == head  # nothing was committed
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]


@pytest.mark.parametrize("kind", ["deep nesting", "lone surrogate", "overflowing number"])
def test_malformed_json_bodies_of_other_endpoints_are_400(server: str, kind: str) -> None:
    auth = {"Authorization": f"Bearer {ALICE.token}", "Content-Type": "application/json"}
    _api(server, ALICE).create_repo("acme/json")
    value = HOSTILE_LINES[kind].split(b'"value": ', 1)[1][:-1]  # the hostile object of the commit line
    for path, body in (("/api/repos/create", b'{"name": "acme/x", "extra": ' + value + b"}"),
                       ("/api/models/acme/json/preupload/main", b'{"files": [], "x": ' + value + b"}"),
                       ("/api/models/acme/json/paths-info/main", b'{"paths": [], "x": ' + value + b"}")):
        status, _, answer = raw_request(server, "POST", path, body=body, headers=auth)
        assert status == 400 and "error" in json.loads(answer), (path, answer)


def test_token_file_shape_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    good = {"tokens": [{"token": "t-admin", "user": "ops", "admin": True},
                       {"token": "t-alice", "user": "alice", "write": ["alice", "Acme"], "read": ["partner/eval"]}]}
    path.write_text(json.dumps(good))
    admin, alice = load_token_file(path)
    assert admin.admin and alice.write == {"alice", "acme"} and alice.read == {"partner/eval"}
    assert "t-alice" not in repr(alice)  # tokens stay out of logs and tracebacks
    bad = [
        "one-token-per-line\n",
        json.dumps({"tokens": [{"token": "t", "user": "u"}]}),  # grants nothing
        json.dumps({"tokens": [{"token": "t", "user": "u", "write": ["../etc"]}]}),
        json.dumps({"tokens": [{"token": "with space", "user": "u", "admin": True}]}),
        json.dumps({"tokens": [{"token": "t", "user": "u", "admin": True, "role": "x"}]}),
        json.dumps({"tokens": [{"token": "t", "user": "a", "admin": True}, {"token": "t", "user": "b", "admin": True}]}),
        json.dumps({"tokens": [{"token": "t", "user": "u", "write": "acme"}]}),
    ]
    for text in bad:
        path.write_text(text)
        with pytest.raises(TokenFileError):
            load_token_file(path)
    with pytest.raises(TypeError, match="TokenGrant"):
        HubServer(tmp_path / "r", tokens=["bare-string"])  # type: ignore[list-item]
