"""The server's HTTP surface at the byte level: headers, ranges, path traversal, keep-alive, CLI."""

# ruff: noqa: F811 - the fixtures imported from server_fixtures come back as test arguments

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from huggingface_hub import CommitOperationAdd
from support.server_fixtures import HubClient, raw_request, sha256_of

from adapterhub.server import HubServer

pytestmark = pytest.mark.network_local

DATA = bytes(range(256)) * 40  # 10 KiB, every offset distinguishable


@pytest.fixture
def seeded(hub: HubClient) -> tuple[HubClient, str]:
    hub.api.create_repo("acme/bytes")
    commit = hub.api.create_commit(
        "acme/bytes",
        [
            CommitOperationAdd("w.bin", DATA),
            CommitOperationAdd("dir/x.txt", b"x"),
            CommitOperationAdd("e.bin", b""),
        ],
        commit_message="seed",
    )
    return hub, commit.oid


def test_head_carries_the_metadata_the_client_needs(seeded: tuple[HubClient, str]) -> None:
    hub, oid = seeded
    sha = hashlib.sha256(DATA).hexdigest()
    for revision in ("main", oid):
        status, headers, body = hub.raw("HEAD", f"/acme/bytes/resolve/{revision}/w.bin")
        assert status == 200 and body == b""
        assert headers["x-repo-commit"] == oid
        assert headers["etag"] == f'"{sha}"' and headers["x-linked-etag"] == f'"{sha}"'
        assert headers["x-linked-size"] == headers["content-length"] == str(len(DATA))
        assert headers["accept-ranges"] == "bytes"
    assert "immutable" in hub.raw("HEAD", f"/acme/bytes/resolve/{oid}/w.bin")[1]["cache-control"]
    status, headers, body = hub.raw("GET", "/acme/bytes/resolve/main/w.bin")
    assert status == 200 and body == DATA
    status, headers, body = hub.raw("GET", "/acme/bytes/resolve/main/e.bin")
    assert status == 200 and body == b"" and headers["content-length"] == "0"
    # Encoded slashes in the file path and revision are decoded per segment, as the client sends them.
    assert hub.raw("GET", "/acme/bytes/resolve/main/dir%2Fx.txt")[2] == b"x"


def test_404s_carry_x_error_code(seeded: tuple[HubClient, str]) -> None:
    hub, oid = seeded
    cases = {
        "/acme/none/resolve/main/w.bin": "RepoNotFound",
        "/acme/bytes/resolve/nope/w.bin": "RevisionNotFound",
        "/acme/bytes/resolve/main/nope.bin": "EntryNotFound",
        "/api/models/acme/none": "RepoNotFound",
        "/api/models/acme/bytes/revision/nope": "RevisionNotFound",
        "/api/models/acme/bytes/tree/main/nope": "EntryNotFound",
    }
    for path, code in cases.items():
        for method in ("HEAD", "GET"):
            status, headers, body = hub.raw(method, path)
            assert (status, headers.get("x-error-code")) == (404, code), (method, path)
            if method == "GET":
                assert "error" in json.loads(body)
    assert hub.raw("HEAD", "/acme/bytes/resolve/main/nope.bin")[1]["x-repo-commit"] == oid
    assert hub.raw("GET", "/no/such/endpoint/at/all")[0] == 404
    assert hub.raw("DELETE", "/acme/bytes/resolve/main/w.bin")[0] == 405


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, len(DATA) - 1), ("bytes=-10", len(DATA) - 10, len(DATA) - 1),
     ("bytes=10000-99999", 10000, len(DATA) - 1), ("bytes=5-5", 5, 5)],
)  # fmt: skip
def test_range_requests(seeded: tuple[HubClient, str], header: str, start: int, end: int) -> None:
    hub, _ = seeded
    status, headers, body = hub.raw("GET", "/acme/bytes/resolve/main/w.bin", headers={"Range": header})
    assert status == 206
    assert headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert headers["content-length"] == str(end - start + 1)
    assert body == DATA[start : end + 1]


def test_range_edge_cases(seeded: tuple[HubClient, str]) -> None:
    hub, _ = seeded
    url = "/acme/bytes/resolve/main/w.bin"
    status, headers, _ = hub.raw("GET", url, headers={"Range": f"bytes={len(DATA)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(DATA)}"
    assert hub.raw("GET", "/acme/bytes/resolve/main/e.bin", headers={"Range": "bytes=0-"})[0] == 416
    for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3", "garbage"):
        status, _, body = hub.raw("GET", url, headers={"Range": ignored})
        assert (status, body) == (200, DATA), ignored
    sha = hashlib.sha256(DATA).hexdigest()
    assert hub.raw("GET", url, headers={"Range": "bytes=1-", "If-Range": f'"{sha}"'})[0] == 206
    assert hub.raw("GET", url, headers={"Range": "bytes=1-", "If-Range": '"other"'})[0] == 200
    # requests (what a plain download and hub 0.36 use) reads the same ranges.
    response = requests.get(hub.endpoint + url, headers={"Range": "bytes=7-"}, timeout=10)
    assert response.status_code == 206 and response.content == DATA[7:]


TRAVERSALS = [
    "/acme/bytes/resolve/main/../../../../etc/passwd",
    "/acme/bytes/resolve/main/..%2F..%2F..%2Fetc%2Fpasswd",
    "/acme/bytes/resolve/main/%2Fetc%2Fpasswd",
    "/acme/bytes/resolve/main/dir/..%5C..%5Cw.bin",
    "/acme/bytes/resolve/main/w.bin%00.txt",
    "/acme/bytes/resolve/main/dir%0Ax.txt",
    "/acme/bytes/resolve/main/./w.bin",
    "/acme/bytes/resolve/main/dir//x.txt",
    "/acme/bytes/resolve/..%2F..%2F..%2Fetc/passwd",
    "/acme/bytes/resolve/%2E%2E/w.bin",
    "/..%2F..%2Fetc/passwd/resolve/main/w.bin",
    "/acme/..%2F..%2F..%2Fetc/resolve/main/passwd",
    "/acme/../resolve/main/w.bin",
    "/api/models/..%2F..%2F..%2Fetc/passwd",
    "/api/models/acme/..",
    "/api/models/acme/bytes/tree/main/..%2F..",
    "/api/models/acme/bytes/tree/..%2Fmain",
    "/api/models/acme/bytes/revision/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/models/acme%5C..%5C/bytes",
    "/api/models/acme/bytes%00/revision/main",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(seeded: tuple[HubClient, str], path: str) -> None:
    hub, _ = seeded
    for method in ("GET", "HEAD"):
        status, _, body = hub.raw(method, path)
        assert status == 400, (method, path, status)
        assert b"root:" not in body


def test_traversal_in_writes_is_refused_and_nothing_escapes_the_root(hub: HubClient, tmp_path: Path) -> None:
    hub.api.create_repo("acme/w")
    for name in ("../evil", "acme/../../evil", "acme\\evil", "a--b/c", "acme/.git", "acme/x..y", "api/repo"):
        body = json.dumps(
            {"name": name.split("/")[-1], "organization": name.rsplit("/", 1)[0] if "/" in name else None}
        )
        status, _, _ = hub.raw("POST", "/api/repos/create", body=body.encode())
        assert status == 400, name
    for bad in (
        "../escape.txt",
        "/abs.txt",
        "a/../../b.txt",
        "a\\b.txt",
        "nul\x00.txt",
        "ctl\x07.txt",
        ".git/config",
        "",
    ):
        lines = [
            {"key": "header", "value": {"summary": "bad"}},
            {
                "key": "file",
                "value": {"path": bad, "content": base64.b64encode(b"pwn").decode(), "encoding": "base64"},
            },
        ]
        payload = "".join(json.dumps(line) + "\n" for line in lines).encode()
        status, _, _ = hub.raw("POST", "/api/models/acme/w/commit/main", body=payload)
        assert status == 400, bad
    status, _, _ = hub.raw(
        "POST", "/api/models/acme/w/preupload/main", body=json.dumps({"files": [{"path": "../x"}]}).encode()
    )
    assert status == 400
    assert hub.api.list_repo_files("acme/w") == []
    written = [p for p in tmp_path.parent.rglob("*") if p.is_file()]
    assert not any(p.name in ("evil", "escape.txt", "abs.txt", "b.txt") for p in written)
    assert not any(p.read_bytes() == b"pwn" for p in written)  # refused before any content was stored


def test_small_answers_on_a_kept_alive_connection_are_not_held_back(seeded: tuple[HubClient, str]) -> None:
    # Headers and body leave in two writes; with Nagle's algorithm on, a small body waited for the
    # client's delayed ACK (~40 ms on Linux) on every request after the first on the connection, so a
    # pull fetching several small files in a row paid ~40 ms each. The fastest of several requests
    # shows it whatever the machine's load (each one stalled before).
    hub, _ = seeded
    parts = urlsplit(hub.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    times = []
    try:
        for _ in range(6):
            started = time.perf_counter()
            conn.request("GET", "/acme/bytes/resolve/main/dir/x.txt")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b"x"
            times.append(time.perf_counter() - started)
    finally:
        conn.close()
    assert min(times[1:]) < 0.025, f"every kept-alive request took >= 25 ms: {times}"


def test_refused_request_body_is_drained_so_keep_alive_survives(seeded: tuple[HubClient, str]) -> None:
    hub, _ = seeded
    parts = urlsplit(hub.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        body = (
            b'{"key": "header", "value": {"summary": "x", "parentCommit": "'
            + b"0" * 40
            + b'"}}\n'
            + b" " * 100_000
        )
        conn.request("POST", "/api/models/acme/bytes/commit/main", body=body,
                     headers={"Authorization": f"Bearer {hub.api.token}"})
        first = conn.getresponse()
        assert first.status == 412
        first.read()
        conn.request("GET", "/acme/bytes/resolve/main/w.bin")  # same connection
        second = conn.getresponse()
        assert second.status == 200 and second.read() == DATA
    finally:
        conn.close()


def test_large_file_streams_and_matches(hub: HubClient, tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    big.write_bytes(os.urandom(12 << 20))
    hub.api.create_repo("acme/big")
    commit = hub.api.upload_file(path_or_fileobj=big, path_in_repo="big.safetensors", repo_id="acme/big")
    local = hub.download("acme/big", "big.safetensors", revision=commit.oid)
    assert sha256_of(local) == sha256_of(big)
    response = requests.get(
        f"{hub.endpoint}/acme/big/resolve/{commit.oid}/big.safetensors", stream=True, timeout=10
    )
    digest = hashlib.sha256()
    for chunk in response.iter_content(1 << 20):
        digest.update(chunk)
    assert digest.hexdigest() == sha256_of(big)


def test_storage_layout_is_content_addressed_and_commits_are_immutable(seeded: tuple[HubClient, str]) -> None:
    hub, oid = seeded
    root = hub.root
    sha = hashlib.sha256(DATA).hexdigest()
    assert (root / "blobs" / sha[:2] / sha).read_bytes() == DATA
    repo_dir = root / "repos" / "models" / "acme" / "bytes"
    record = json.loads((repo_dir / "commits" / f"{oid}.json").read_text())
    assert record["files"]["w.bin"]["sha256"] == sha
    assert json.loads((repo_dir / "refs.json").read_text())["branches"]["main"] == oid
    assert not list((root / "tmp").iterdir())


def test_cli_serves_a_root(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": [{"token": "tok-o", "user": "o", "write": ["o"]}]}))
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "ADAPTERHUB_SERVER_TOKENS"}
    cmd = [sys.executable, "-m", "adapterhub.server", "--root", str(tmp_path / "cli-root"), "--port", "0",
           "--token-file", str(token_file)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match and "1 token(s); writes need a token" in line, line
        endpoint = match.group(1)
        create = b'{"name":"n","organization":"o"}'
        assert raw_request(endpoint, "POST", "/api/repos/create", body=create)[0] == 401
        status, _, body = raw_request(
            endpoint, "POST", "/api/repos/create", body=create, headers={"Authorization": "Bearer tok-o"}
        )
        assert status == 200 and json.loads(body)["url"] == f"{endpoint}/o/n"
        other = b'{"name":"n","organization":"elsewhere"}'
        assert raw_request(
            endpoint, "POST", "/api/repos/create", body=other, headers={"Authorization": "Bearer tok-o"}
        )[0] == 403  # fmt: skip
        assert raw_request(endpoint, "GET", "/api/models/o/n")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_server_stops_promptly_with_open_connections(tmp_path: Path) -> None:
    server = HubServer(tmp_path / "r")
    endpoint = server.start()
    parts = urlsplit(endpoint)
    idle = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    idle.request("GET", "/api/models/a/b")
    idle.getresponse().read()  # connection stays open (keep-alive)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    idle.close()
