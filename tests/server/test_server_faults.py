"""The download-side fault plan: each fault at the byte level, and how the real client meets it."""

# ruff: noqa: F811 - the fixtures imported from server_fixtures come back as test arguments

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from urllib.parse import urlsplit

import pytest
from huggingface_hub import CommitOperationAdd
from support.server_fixtures import HUB_VERSION, HubClient, sha256_of

from adapterhub.server import Fault, FaultKind, FaultPlan

pytestmark = pytest.mark.network_local

DATA = os.urandom(100_000)
URL = "/acme/faulty/resolve/main/w.bin"


@pytest.fixture
def seeded(hub: HubClient, fault_plan: FaultPlan) -> tuple[HubClient, FaultPlan, str]:
    hub.api.create_repo("acme/faulty")
    commit = hub.api.create_commit(
        "acme/faulty",
        [CommitOperationAdd("w.bin", DATA), CommitOperationAdd("other.txt", b"other")],
        commit_message="seed",
    )
    return hub, fault_plan, commit.oid


def _get(endpoint: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10):
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    conn.request("GET", path, headers=headers or {})
    return conn, conn.getresponse()


def test_faults_are_off_by_default_and_consumed_in_order(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    assert hub.raw("GET", URL)[2] == DATA and plan.applied == []
    plan.fail(503, times=2)
    plan.ignore_range()
    statuses = [hub.raw("GET", URL, headers={"Range": "bytes=10-"})[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 206]
    assert [a.kind for a in plan.applied] == [FaultKind.ERROR, FaultKind.ERROR, FaultKind.IGNORE_RANGE]
    assert plan.applied[0].range_header == "bytes=10-" and plan.pending() == []


def test_faults_match_method_and_path(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    rule = plan.fail(500, times=None, path="*.bin")
    assert hub.raw("HEAD", URL)[0] == 200  # HEAD is not covered unless asked for
    assert hub.raw("GET", "/acme/faulty/resolve/main/other.txt")[2] == b"other"
    assert [hub.raw("GET", URL)[0] for _ in range(3)] == [500, 500, 500]
    assert rule.hits == 3
    plan.clear()
    plan.add(Fault(FaultKind.ERROR, status=502, methods=frozenset({"HEAD"}), repo_id="acme/faulty"))
    assert hub.raw("HEAD", URL)[0] == 502 and hub.raw("HEAD", URL)[0] == 200


def test_error_fault_body_is_json_with_message(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.fail(500)
    status, headers, body = hub.raw("GET", URL)
    assert status == 500 and b"injected fault" in body and "x-error-message" in headers


def test_ignore_range_answers_200_with_everything(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.ignore_range()
    status, headers, body = hub.raw("GET", URL, headers={"Range": "bytes=500-"})
    assert status == 200 and body == DATA and "content-range" not in headers


def test_wrong_content_range_serves_another_range(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.wrong_content_range(shift=7)
    status, headers, body = hub.raw("GET", URL, headers={"Range": "bytes=100-199"})
    assert status == 206
    assert headers["content-range"] == f"bytes 107-199/{len(DATA)}"
    assert body == DATA[107:200]
    plan.wrong_content_range()
    status, headers, body = hub.raw("GET", URL)  # no Range asked, a partial answer anyway
    assert status == 206 and headers["content-range"] == f"bytes 1-{len(DATA) - 1}/{len(DATA)}"


def test_extra_bytes_go_beyond_the_file(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.extra_bytes(count=32)
    status, headers, body = hub.raw("GET", URL)
    assert status == 200 and headers["content-length"] == str(len(DATA) + 32)
    assert body[: len(DATA)] == DATA and len(body) == len(DATA) + 32
    assert headers["x-linked-size"] == str(len(DATA))  # metadata still tells the truth


def test_truncate_cuts_the_body_and_closes(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.truncate(fraction=0.25)
    conn, response = _get(hub.endpoint, URL)
    assert response.status == 200 and response.getheader("Content-Length") == str(len(DATA))
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert cut.value.partial == DATA[: len(DATA) // 4]
    conn.close()
    plan.truncate(fraction=0.5)
    conn, response = _get(hub.endpoint, URL, headers={"Range": "bytes=1000-"})
    assert response.status == 206
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert cut.value.partial == DATA[1000 : 1000 + (len(DATA) - 1000) // 2]
    conn.close()


def test_stall_before_trips_a_client_timeout(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.stall(1.0, at="before")
    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        _get(hub.endpoint, URL, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert hub.raw("GET", URL)[2] == DATA  # the next request is served normally


def test_stall_mid_pauses_after_part_of_the_body(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.stall(0.6, at="mid", fraction=0.5)
    conn, response = _get(hub.endpoint, URL)
    started = time.monotonic()
    first = response.read(len(DATA) // 2)
    assert first == DATA[: len(DATA) // 2] and time.monotonic() - started < 0.5
    rest = response.read()
    assert time.monotonic() - started >= 0.5 and first + rest == DATA
    conn.close()


def test_stalled_request_does_not_block_server_stop(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, _ = seeded
    plan.stall(30, at="mid")
    conn, response = _get(hub.endpoint, URL)
    response.read(1000)
    started = time.monotonic()
    hub.server.stop()
    assert time.monotonic() - started < 3
    conn.close()


def test_real_client_never_keeps_a_wrong_file(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    """Whatever a client version does with a spoiled download, it must not hand back wrong bytes."""
    hub, plan, oid = seeded
    spoilers = {
        "truncate": lambda: plan.truncate(),
        "extra": lambda: plan.extra_bytes(),
        "truncate-then-ignore-range": lambda: (plan.truncate(), plan.ignore_range()),
        "truncate-then-wrong-range": lambda: (plan.truncate(), plan.wrong_content_range()),
    }
    for name, spoil in spoilers.items():
        plan.clear()
        spoil()
        try:
            path = hub.download("acme/faulty", "w.bin", revision=oid, cache_dir=hub.cache_dir / name)
        except Exception:  # noqa: BLE001 - any refusal is acceptable; a wrong file is not
            continue
        assert path.read_bytes() == DATA, name
        assert plan.applied, name


@pytest.mark.skipif(
    HUB_VERSION < (1, 0),
    reason="huggingface_hub 0.36 does not resume a truncated body (raises ChunkedEncodingError)",
)
def test_truncated_download_is_resumed_by_hub_2x(seeded: tuple[HubClient, FaultPlan, str]) -> None:
    hub, plan, oid = seeded
    plan.truncate()
    path = hub.download("acme/faulty", "w.bin", revision=oid)
    assert sha256_of(path) == hashlib.sha256(DATA).hexdigest()
    assert [a.kind for a in plan.applied] == [FaultKind.TRUNCATE]
