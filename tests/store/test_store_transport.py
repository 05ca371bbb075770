"""Transport faults during a pull: each ends in a typed error for that source, and the next source is tried.

Every server here is a :class:`~http_faults.ScriptedServer` on 127.0.0.1 doing one thing wrong; the
second source is a local directory with the right bytes. Timeouts and rates are small and bounded so
the slow faults (trickles) cost about a second each.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from support.http_faults import Reply, ScriptedServer, redirect
from support.store_support import dir_with, manifest_for, safetensors_bytes

from adapterhub.errors import DownloadError, RedirectError, TransferTimeoutError
from adapterhub.manifest import FileEntry
from adapterhub.store import FetchOptions, HttpMirrorSource, HttpSource, LocalDirSource, pull
from adapterhub.store.http import HttpFetcher
from adapterhub.store.layout import CacheLayout
from adapterhub.store.writer import BlobWriter

pytestmark = pytest.mark.network_local

WEIGHTS = safetensors_bytes(256)
FILES = {"adapter.safetensors": WEIGHTS}
QUICK = FetchOptions(connect_timeout=0.5, read_timeout=0.5, retries=1, backoff=0.01, min_rate=2000, rate_window=0.5,
                     max_redirects=3)


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    return dir_with(tmp_path / "good", FILES)


FAULTS = {
    "redirect loop": [redirect("adapter.safetensors")],  # relative: back to itself
    "redirect to file:": [redirect("file:///etc/passwd")],
    "redirect to ftp:": [redirect("ftp://127.0.0.1/adapter.safetensors")],
    "two Content-Lengths": [Reply(body=WEIGHTS, length=f"{len(WEIGHTS)}, {len(WEIGHTS) + 1}")],
    "chunked body cut off": [Reply(body=WEIGHTS, chunked=True, cut_chunked=True)],
    "body trickled a byte at a time": [Reply(body=WEIGHTS, trickle=0.05)],  # ~1 min for the whole body
    "headers trickled a byte at a time": [Reply(body=WEIGHTS, header_trickle=0.1)],  # ~8 s for the headers
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_source_hands_over_to_the_next(cache, scripted, good_dir, fault):
    scripted.route("/bad/adapter.safetensors", *FAULTS[fault])
    manifest = manifest_for(FILES)
    start = time.monotonic()
    result = pull(manifest, sources=[HttpSource(scripted.url("/bad/")), LocalDirSource(good_dir)], options=QUICK)
    elapsed = time.monotonic() - start
    assert result.files["adapter.safetensors"].read_bytes() == WEIGHTS
    assert scripted.seen("/bad/adapter.safetensors"), "the faulty source was not even asked"
    assert elapsed < 4, f"{fault}: the pull took {elapsed:.1f}s"


def _fetch(server: ScriptedServer, tmp_path: Path, options: FetchOptions) -> None:
    """Fetch ``/adapter.safetensors`` of ``server`` into a blob, as a pull's source would."""
    entry = FileEntry("adapter.safetensors", len(WEIGHTS), manifest_for(FILES).files[0].sha256)
    with BlobWriter(CacheLayout(tmp_path / "c"), entry.sha256, entry.size) as w:
        HttpSource(server.origin + "/", fetcher=HttpFetcher(options)).fetch(entry, w)
        w.commit()


@pytest.mark.parametrize(("fault", "error", "text"), [
    ("redirect loop", RedirectError, "more than 1 redirects"),
    ("redirect to file:", RedirectError, "only http"),
    ("two Content-Lengths", DownloadError, "malformed"),
    ("chunked body cut off", DownloadError, "giving up after 2 attempt"),
    ("body trickled a byte at a time", TransferTimeoutError, "too slow"),
    ("headers trickled a byte at a time", DownloadError, "headers did not arrive"),
])
def test_each_fault_has_its_typed_error(scripted, tmp_path, fault, error, text):
    scripted.route("/adapter.safetensors", *FAULTS[fault])
    with pytest.raises(error, match=text):
        _fetch(scripted, tmp_path, dataclasses.replace(QUICK, max_redirects=1))


def test_overall_deadline_ends_a_transfer_that_keeps_a_steady_trickle(scripted, tmp_path):
    scripted.route("/adapter.safetensors", Reply(body=WEIGHTS, trickle=0.02))  # ~50 B/s: above min_rate
    options = FetchOptions(read_timeout=2, retries=3, backoff=0.01, min_rate=1, rate_window=0.2, deadline=1.0)
    start = time.monotonic()
    with pytest.raises(TransferTimeoutError, match="deadline"):
        _fetch(scripted, tmp_path, options)
    assert time.monotonic() - start < 3


def test_5xx_then_success_retries_with_backoff(cache, scripted):
    scripted.route("/m/" + manifest_for(FILES).files[0].sha256, Reply(503), Reply(429, [("Retry-After", "0")]),
                 Reply(body=WEIGHTS))
    options = FetchOptions(retries=2, backoff=0.01)
    result = pull(manifest_for(FILES), sources=[HttpMirrorSource(scripted.url("/m/{sha256}"))], options=options)
    assert result.files["adapter.safetensors"].read_bytes() == WEIGHTS
    assert len(scripted.seen()) == 3


def test_caller_built_sources_use_the_pulls_options(cache, scripted, good_dir):
    """A source built without a fetcher follows ``pull(options=...)``, not the environment defaults."""
    scripted.route("/slow/adapter.safetensors", Reply(body=WEIGHTS, header_trickle=0.2))  # headers take ~20 s
    options = FetchOptions(connect_timeout=0.5, read_timeout=0.5, retries=0, backoff=0.01)
    start = time.monotonic()
    result = pull(manifest_for(FILES), sources=[HttpSource(scripted.url("/slow/")), LocalDirSource(good_dir)],
                  options=options)
    assert result.files["adapter.safetensors"].read_bytes() == WEIGHTS
    assert time.monotonic() - start < 5


def test_the_body_cap_holds_while_streaming(cache, scripted):
    """A server sending more than the manifest size is cut at size + 1, whatever Content-Length says."""
    from adapterhub.errors import SizeLimitError

    scripted.route("/m/" + manifest_for(FILES).files[0].sha256, Reply(body=WEIGHTS + b"\0" * (1 << 20), length=None))
    with pytest.raises(SizeLimitError):
        pull(manifest_for(FILES), sources=[HttpMirrorSource(scripted.url("/m/{sha256}"))], options=QUICK)


@pytest.mark.parametrize("coding", ["gzip", "identity", None])
def test_a_body_is_stored_as_sent_or_decoded_as_labelled(cache, scripted, coding):
    """We ask for ``identity``; a body the server encodes anyway is decoded before it is hashed (the
    transport reads unlabelled bodies without urllib3's decoding layer, labelled ones through it)."""
    import gzip

    body = gzip.compress(WEIGHTS) if coding == "gzip" else WEIGHTS
    headers = [("Content-Encoding", coding)] if coding else []
    scripted.route("/enc/adapter.safetensors", Reply(body=body, headers=headers))
    result = pull(manifest_for(FILES), sources=[HttpSource(scripted.url("/enc/"))], options=QUICK)
    assert result.files["adapter.safetensors"].read_bytes() == WEIGHTS
