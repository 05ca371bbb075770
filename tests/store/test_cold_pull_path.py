"""The cold pull's critical path: what runs where and when (benchmarks/results/store.md, cold-pull notes).

Each test pins one choice that keeps a cold pull close to a bare verified download without dropping a
check: the Hub metadata request overlaps the GET but is checked before any byte is written; the largest
file streams on the calling thread; a large blob is hashed on the helper thread from its first chunk; a
small blob is made durable without starting a thread.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

import pytest
from support.server_fixtures import ADMIN_TOKEN
from support.store_support import FAST, HubRepo, blobs, leftovers, manifest_for, put_repo, safetensors_bytes

from adapterhub.errors import DownloadError, IntegrityError
from adapterhub.manifest import FileEntry
from adapterhub.store import pull
from adapterhub.store.layout import CacheLayout
from adapterhub.store.sources import HubSource
from adapterhub.store.writer import BlobWriter

WEIGHTS = safetensors_bytes(64 * 1024)  # 256 KiB


@pytest.fixture
def weights(hub_server) -> HubRepo:
    files = {"adapter.safetensors": WEIGHTS}
    return HubRepo(hub_server, "org/cold", put_repo(hub_server, "org/cold", files), files)


def test_a_file_costs_one_request(cache, weights):
    """The GET's answer from the Hub carries the commit, size and storage the metadata call would ask for:
    no HEAD is sent beside it (on a 2-core machine serving itself, each extra request costs the transfer)."""
    weights.plan.stall(0.3, methods=("HEAD", "GET"), times=2)
    pulled = pull(weights.manifest(), options=FAST)
    assert pulled.files["adapter.safetensors"].read_bytes() == WEIGHTS
    assert [a.method for a in weights.plan.applied] == ["GET"]


@dataclass
class Recorder:
    """A sink that records what reached it (the writer's side of :meth:`HubSource.stream`)."""

    size: int
    limit: int = 0
    where: str = "test"
    offset: int = 0
    written: list[int] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(len(data))
        self.offset += len(data)

    def reset(self) -> None:
        self.offset = 0


def test_a_request_starts_no_thread(weights, monkeypatch):
    """The header watchdog is one thread per process, not a timer thread per request (each start can
    wait for the GIL on the download's critical path)."""
    from adapterhub.transport import Transport

    url = weights.resolve_base() + "adapter.safetensors"
    with Transport(FAST) as transport:
        assert transport.fetch(url, max_bytes=1 << 20).body == WEIGHTS  # the watchdog starts once, here
        started: list[str] = []
        start = threading.Thread.start

        def recording_start(thread: threading.Thread) -> None:
            if threading.current_thread() is threading.main_thread():
                started.append(thread.name)
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", recording_start)
        for _ in range(3):
            assert transport.fetch(url, max_bytes=1 << 20).body == WEIGHTS
    assert started == []


@pytest.mark.parametrize("header, value, match", [
    ("X-Repo-Commit", "0" * 40, "not the pinned"),
    ("X-Linked-Size", str(len(WEIGHTS) + 1), "the manifest says"),
])
def test_no_byte_is_written_before_the_hubs_answer_is_checked(cache, weights, header, value, match):
    """An answer for another commit, or another size, ends the GET unread."""
    weights.plan.rewrite_headers({header: value}, methods=("GET",))
    sink = Recorder(len(WEIGHTS), limit=len(WEIGHTS))
    source = HubSource("org/cold", weights.commit, endpoint=weights.endpoint)
    with pytest.raises(IntegrityError, match=match):
        source.stream("adapter.safetensors", len(WEIGHTS), sink)
    assert sink.written == []


def test_a_hostile_commit_header_is_refused_in_a_message_of_bounded_length(cache, weights):
    weights.plan.rewrite_headers({"X-Repo-Commit": "f" * 20_000}, methods=("GET",))
    source = HubSource("org/cold", weights.commit, endpoint=weights.endpoint)
    with pytest.raises(IntegrityError, match="not the pinned") as raised:
        source.stream("adapter.safetensors", len(WEIGHTS), Recorder(len(WEIGHTS), limit=len(WEIGHTS)))
    assert len(str(raised.value)) < 400 and "20000 chars" in str(raised.value)


def test_an_answer_without_the_commit_header_is_settled_by_the_metadata_call(cache, weights):
    """A server that names the commit only on HEAD (a mirror): the client's metadata call decides, and
    its answer for another commit is refused before a byte is written."""
    weights.plan.rewrite_headers({"X-Repo-Commit": ""}, methods=("GET",))
    source = HubSource("org/cold", weights.commit, endpoint=weights.endpoint)
    sink = Recorder(len(WEIGHTS), limit=len(WEIGHTS))
    source.stream("adapter.safetensors", len(WEIGHTS), sink)
    assert sum(sink.written) == len(WEIGHTS)

    weights.plan.rewrite_headers({"X-Repo-Commit": ""}, methods=("GET",))
    weights.plan.rewrite_headers({"X-Repo-Commit": "0" * 40}, methods=("HEAD",))
    sink = Recorder(len(WEIGHTS), limit=len(WEIGHTS))
    with pytest.raises(IntegrityError, match="not the pinned"):
        source.stream("adapter.safetensors", len(WEIGHTS), sink)
    assert sink.written == []


XET_HEADERS = {"X-Xet-Hash": "a" * 64, "X-Xet-Refresh-Route": "/api/models/org/cold/xet-read-token/main"}


@pytest.mark.parametrize("answer", ["get", "redirect", "head-after-failed-get"])
def test_a_file_the_hub_puts_in_xet_is_read_through_xet_get(cache, weights, scripted, answer):
    """A file the Hub's answer puts in Xet is read with huggingface_hub's xet_get (which here fails: this
    server has no Xet storage, so the error names Xet): whether the answer is the GET's 200 or its
    redirect to the Xet bridge (not followed: the bridge sees no request), and when the GET failed
    but the metadata call says Xet."""
    if answer == "get":
        weights.plan.rewrite_headers(XET_HEADERS, methods=("GET",))
    elif answer == "redirect":
        weights.plan.redirect(scripted.url("/bridge/file"), methods=("GET",), headers=XET_HEADERS)
    else:
        weights.plan.rewrite_headers(XET_HEADERS, methods=("HEAD",))
        weights.plan.fail(404, methods=("GET",), times=None)
    with pytest.raises(DownloadError, match="Xet download failed"):
        pull(weights.manifest(), options=FAST)
    assert leftovers(cache) == [] and blobs(cache) == []
    assert scripted.seen("/bridge/file") == []


def test_a_xet_answer_for_another_commit_is_refused_before_xet_get(cache, weights):
    weights.plan.rewrite_headers({**XET_HEADERS, "X-Repo-Commit": "0" * 40}, methods=("GET",))
    with pytest.raises(IntegrityError, match="not the pinned"):
        HubSource("org/cold", weights.commit, endpoint=weights.endpoint).stream(
            "adapter.safetensors", len(WEIGHTS), Recorder(len(WEIGHTS), limit=len(WEIGHTS)))


@pytest.mark.parametrize("route_allowed", [False, True])
def test_the_token_goes_to_a_xet_refresh_route_only_where_the_token_rule_allows(
        cache, weights, scripted, monkeypatch, route_allowed):
    """xet_get asks the answer's refresh route for a Xet read token with the headers we give it: a route on
    another origin than the configured endpoints gets no token (a hostile answer cannot collect it)."""
    monkeypatch.setenv("HF_ENDPOINT", weights.endpoint)
    monkeypatch.setenv("ADAPTERHUB_TOKEN_ENDPOINTS", scripted.url("/") if route_allowed else "")
    weights.plan.rewrite_headers({"X-Xet-Hash": "a" * 64, "X-Xet-Refresh-Route": scripted.url("/xet-read-token")},
                                 methods=("GET",))
    source = HubSource("org/cold", weights.commit, endpoint=weights.endpoint, token=ADMIN_TOKEN)
    with pytest.raises(DownloadError, match="Xet download failed"):
        source.stream("adapter.safetensors", len(WEIGHTS), Recorder(len(WEIGHTS), limit=len(WEIGHTS)))
    (asked,) = scripted.seen("/xet-read-token")
    assert asked.get("authorization") == (f"Bearer {ADMIN_TOKEN}" if route_allowed else None)


@dataclass
class ThreadRecordingSource:
    """Serves bytes from memory and records the thread each file was fetched on."""

    files: dict[str, bytes]
    fail: str | None = None
    threads: dict[str, threading.Thread] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return "memory"

    def fetch(self, entry: FileEntry, writer: BlobWriter) -> None:
        self.threads[entry.path] = threading.current_thread()
        if entry.path == self.fail:
            time.sleep(0.2)  # the other files are done (or well under way) when this one fails
            raise IntegrityError(f"{entry.path}: refused by the test")
        writer.write(self.files[entry.path])


FILES = {"adapter.safetensors": WEIGHTS, "adapter_config.json": b'{"r": 8}', "README.md": b"# cold\n"}


def test_the_largest_file_streams_on_the_calling_thread(cache):
    source = ThreadRecordingSource(FILES)
    pulled = pull(manifest_for(FILES), sources=[source], options=FAST)
    assert {p: f.read_bytes() for p, f in pulled.files.items()} == FILES
    assert source.threads["adapter.safetensors"] is threading.current_thread()
    assert source.threads["adapter_config.json"] is not threading.current_thread()
    assert source.threads["README.md"] is not threading.current_thread()


def test_a_failure_of_the_largest_file_is_raised_after_the_others_are_stored(cache):
    source = ThreadRecordingSource(FILES, fail="adapter.safetensors")
    with pytest.raises(IntegrityError, match="adapter.safetensors"):
        pull(manifest_for(FILES), sources=[source], options=FAST)
    layout = CacheLayout.default(cache)
    for name in ("adapter_config.json", "README.md"):  # verified blobs stay useful for the next pull
        assert layout.blob(hashlib.sha256(FILES[name]).hexdigest()).read_bytes() == FILES[name]
    assert not layout.blob(hashlib.sha256(WEIGHTS).hexdigest()).exists()
    assert leftovers(cache) == []


class ThreadRecordingSha256:
    """hashlib's sha256, recording the thread of each update."""

    def __init__(self, threads: list[str]) -> None:
        self.inner = hashlib.new("sha256")
        self.threads = threads

    def update(self, data: bytes) -> None:
        self.threads.append(threading.current_thread().name)
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


def test_a_large_blob_is_hashed_off_the_receiving_thread_from_its_first_chunk(tmp_path, monkeypatch):
    payload = os.urandom(8 << 20)
    digest = hashlib.sha256(payload).hexdigest()
    hashed_on: list[str] = []
    monkeypatch.setattr(hashlib, "sha256", lambda: ThreadRecordingSha256(hashed_on))
    layout = CacheLayout.default(tmp_path / "cache")
    with BlobWriter(layout, digest, len(payload)) as writer:
        for start in range(0, len(payload), 1 << 20):
            writer.write(payload[start:start + (1 << 20)])
        writer.commit()
    assert layout.blob(digest).read_bytes() == payload
    assert len(hashed_on) == 8
    assert threading.current_thread().name not in hashed_on, "some megabytes were hashed on the receiving thread"


def test_a_small_blob_is_made_durable_on_the_calling_thread(tmp_path, monkeypatch):
    synced_on: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced_on.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    layout = CacheLayout.default(tmp_path / "cache")
    body = b'{"r": 8}'
    with BlobWriter(layout, hashlib.sha256(body).hexdigest(), len(body)) as writer:
        writer.write(body)
        writer.commit()
    assert layout.blob(hashlib.sha256(body).hexdigest()).read_bytes() == body
    # the file's fsync, then its directory's: both here, no thread started for an 8-byte blob
    assert synced_on and set(synced_on) == {threading.current_thread().name}


def _write_blob(layout: CacheLayout, payload: bytes) -> None:
    with BlobWriter(layout, hashlib.new("sha256", payload).hexdigest(), len(payload)) as writer:
        for start in range(0, len(payload), 1 << 20):
            writer.write(payload[start:start + (1 << 20)])
        writer.commit()


def test_helper_threads_are_kept_between_blobs(tmp_path, monkeypatch):
    """The second large blob is hashed on a thread the first one used: no thread start per download."""
    layout = CacheLayout.default(tmp_path / "cache")
    first: list[str] = []
    monkeypatch.setattr(hashlib, "sha256", lambda: ThreadRecordingSha256(first))
    _write_blob(layout, os.urandom(6 << 20))
    threads_before = set(threading.enumerate())
    seen: list[threading.Thread] = []

    class Recording(ThreadRecordingSha256):
        def update(self, data: bytes) -> None:
            seen.append(threading.current_thread())
            self.inner.update(data)

    monkeypatch.setattr(hashlib, "sha256", lambda: Recording([]))
    _write_blob(layout, os.urandom(6 << 20))
    assert seen and set(seen) <= threads_before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_does_not_use_its_parents_helper_threads(tmp_path):
    layout = CacheLayout.default(tmp_path / "cache")
    _write_blob(layout, os.urandom(6 << 20))  # the parent now keeps helper threads
    payload = os.urandom(6 << 20)
    pid = os.fork()
    if pid == 0:  # the child: its parent's helpers do not exist here, so a borrowed one would hang
        try:
            _write_blob(layout, payload)
            os._exit(0)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung writing a blob")
    assert os.waitstatus_to_exitcode(status) == 0
    assert layout.blob(hashlib.sha256(payload).hexdigest()).read_bytes() == payload


def test_a_writer_looks_for_a_dead_writers_file_without_listing_the_blobs(tmp_path, monkeypatch):
    """Resuming needs the partial file of a dead writer of the same blob; those live in their own directory, so a
    writer never lists ``blobs/sha256`` (O(blobs) per file written: 26 ms at 20,000 blobs)."""
    layout = CacheLayout.default(tmp_path / "cache")
    layout.blobs.mkdir(parents=True)
    for i in range(50):
        (layout.blobs / f"{i:064x}").write_bytes(b"x")
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path=".", *args, **kwargs):
        listed.append(os.fspath(path))
        return real_scandir(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    body = b'{"r": 8}'
    with BlobWriter(layout, hashlib.sha256(body).hexdigest(), len(body)) as writer:
        writer.write(body)
        writer.commit()
    assert os.fspath(layout.blobs) not in listed and os.fspath(layout.partials) in listed
    assert layout.blob(hashlib.sha256(body).hexdigest()).read_bytes() == body
    assert not list(layout.partials.iterdir())  # nothing left behind
