"""Cached bytes are reused only when they still are the verified bytes (see adapterhub/store/reuse.py).

Each test damages the cache the way issue 10 describes (an in-place edit of the same size, a
truncated blob, a blob replaced by a symlink) and checks that the next pull serves the manifest's
bytes, and that "verified" is printed only when the bytes were hashed by that pull.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.store_support import dir_with, leftovers, manifest_for, safetensors_bytes, sha

from adapterhub.manifest import MANIFEST_FILENAME, manifest_to_dict
from adapterhub.store import LocalDirSource, pull, verify

WEIGHTS = safetensors_bytes(4096)
CONFIG = b'{"r": 4, "alpha": 8}\n'
FILES = {"adapter.safetensors": WEIGHTS, "adapter_config.json": CONFIG}


@pytest.fixture
def source(tmp_path: Path) -> LocalDirSource:
    return LocalDirSource(dir_with(tmp_path / "source", FILES))


def blob(cache: Path, body: bytes) -> Path:
    return cache / "blobs" / "sha256" / sha(body)


def edit_in_place(path: Path, *, keep_mtime: bool = False) -> None:
    """Flip one byte without changing the size (and, if asked, put the old mtime back)."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, 0o444)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def assert_serves_the_manifest(result) -> None:
    for path, body in FILES.items():
        target = result.files[path]
        assert not target.is_symlink()
        assert target.read_bytes() == body, f"{path} serves other bytes"


@pytest.mark.parametrize("rehash_limit", [None, "0"])
@pytest.mark.parametrize("path", list(FILES))
def test_a_file_edited_in_place_is_never_served(cache, source, monkeypatch, rehash_limit, path):
    """Small files are always re-hashed; with the limit at 0 every file relies on its stat stamp, and an
    edit is seen even when the mtime is put back (ctime cannot be)."""
    if rehash_limit is not None:
        monkeypatch.setenv("ADAPTERHUB_REHASH_LIMIT", rehash_limit)
    manifest = manifest_for(FILES)
    first = pull(manifest, sources=[source])
    edit_in_place(first.files[path], keep_mtime=True)
    again = pull(manifest, sources=[source])
    assert_serves_the_manifest(again)
    assert again.fully_hashed
    assert verify().ok


def test_an_untouched_warm_pull_hashes_only_small_files(cache, source, monkeypatch):
    manifest = manifest_for(FILES)
    pull(manifest, sources=[source])
    warm = pull(manifest, sources=[])  # no source: any fetch would fail
    assert warm.hashed == 2 and warm.fully_hashed  # both files are under the default 16 MiB
    monkeypatch.setenv("ADAPTERHUB_REHASH_LIMIT", "0")
    stat_only = pull(manifest, sources=[])
    assert stat_only.hashed == 0 and not stat_only.fully_hashed  # stamps match: nothing to hash


def test_a_stamp_that_changed_for_a_harmless_reason_costs_one_rehash(cache, source, monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_REHASH_LIMIT", "0")
    manifest = manifest_for(FILES)
    first = pull(manifest, sources=[source])
    os.link(first.files["adapter.safetensors"], first.path.parent / "extra-link")  # changes ctime only
    assert pull(manifest, sources=[]).hashed == 1
    assert pull(manifest, sources=[]).hashed == 0  # the new stamp was recorded
    os.unlink(first.path.parent / "extra-link")


@pytest.mark.parametrize("path", list(FILES))
def test_a_truncated_blob_is_not_linked_into_a_new_view(cache, source, path):
    pull(manifest_for(FILES, version="1.0.0"), sources=[source])
    target = blob(cache, FILES[path])
    os.chmod(target, 0o644)
    os.truncate(target, 3)  # the 1.0.0 view shares the inode: it is damaged too
    newer = pull(manifest_for(FILES, version="1.0.1"), sources=[source])
    assert_serves_the_manifest(newer)
    assert_serves_the_manifest(pull(manifest_for(FILES, version="1.0.0"), sources=[source]))
    assert blob(cache, FILES[path]).read_bytes() == FILES[path]


@pytest.mark.parametrize("points_to", ["wrong bytes", "right bytes"])
def test_a_blob_replaced_by_a_symlink_is_not_followed(cache, source, tmp_path, points_to):
    """Even a link to the right bytes is refused: they live outside the cache and may change."""
    pull(manifest_for(FILES, version="1.0.0"), sources=[source])
    outside = tmp_path / "outside.json"
    outside.write_bytes(CONFIG if points_to == "right bytes" else CONFIG.replace(b"4", b"5"))
    target = blob(cache, CONFIG)
    os.unlink(target)
    os.symlink(outside, target)
    newer = pull(manifest_for(FILES, version="1.0.1"), sources=[source])
    assert_serves_the_manifest(newer)
    assert os.stat(newer.files["adapter_config.json"]).st_ino != os.stat(outside).st_ino
    assert not target.is_symlink() and target.read_bytes() == CONFIG
    assert leftovers(cache) == []


def test_a_view_file_replaced_by_a_symlink_is_rebuilt(cache, source, tmp_path):
    manifest = manifest_for(FILES)
    first = pull(manifest, sources=[source])
    outside = tmp_path / "outside.json"
    outside.write_bytes(CONFIG)
    view_file = first.files["adapter_config.json"]
    os.chmod(view_file.parent, 0o755)
    os.unlink(view_file)
    os.symlink(outside, view_file)
    assert_serves_the_manifest(pull(manifest, sources=[source]))


def test_verify_evicts_a_symlinked_blob_even_to_the_right_bytes(cache, source, tmp_path):
    pull(manifest_for(FILES), sources=[source])
    outside = tmp_path / "outside.json"
    outside.write_bytes(CONFIG)
    os.unlink(blob(cache, CONFIG))
    os.symlink(outside, blob(cache, CONFIG))
    report = verify()
    assert not report.ok and sha(CONFIG) in report.evicted_blobs
    assert outside.read_bytes() == CONFIG  # the link was removed, not its target


def test_cli_says_verified_only_when_it_hashed(cache, source, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from adapterhub.cli import cli
    from adapterhub.registry import add_release, init_index

    index = init_index(tmp_path / "index", "team")
    (index / "mirror").mkdir()
    for body in FILES.values():
        (index / "mirror" / sha(body)).write_bytes(body)
    add_release(index, manifest_for(FILES, [{"type": "bundled"}]))

    def run() -> str:
        result = CliRunner().invoke(cli, ["pull", "toy-adapter", "--index", str(index)])
        assert result.exit_code == 0, result.output
        return result.output

    assert "(downloaded" in run() and "verified" in run()
    assert "(cached, verified)" in run()
    monkeypatch.setenv("ADAPTERHUB_REHASH_LIMIT", "0")
    out = run()
    assert "verified)" not in out and "0 of 2 file(s) re-hashed, 2 unchanged since verified" in out
    json_out = json.loads(CliRunner().invoke(cli, ["pull", "toy-adapter", "--index", str(index), "--json"]).output)
    assert json_out["hashed_files"] == 0


def test_the_view_manifest_is_a_regular_file(cache, source):
    manifest = manifest_for(FILES)
    first = pull(manifest, sources=[source])
    doc = first.path / MANIFEST_FILENAME
    os.chmod(first.path, 0o755)
    other = first.path.parent / "elsewhere.json"
    other.write_text(json.dumps(manifest_to_dict(manifest)))
    os.unlink(doc)
    os.symlink(other, doc)
    again = pull(manifest, sources=[source])
    assert not (again.path / MANIFEST_FILENAME).is_symlink()


def test_a_view_whose_manifest_a_crash_emptied_is_rebuilt(cache, source):
    """View JSON is not fsynced (only blobs are): a crash may leave it empty, and the next pull notices."""
    manifest = manifest_for(FILES)
    first = pull(manifest, sources=[source])
    os.chmod(first.path, 0o755)
    (first.path / MANIFEST_FILENAME).write_bytes(b"")
    again = pull(manifest, sources=[source])
    assert json.loads((again.path / MANIFEST_FILENAME).read_text())["name"] == manifest.name


def test_one_hashing_loop_for_files_blobs_and_limits(tmp_path):
    """fileio.sha256_stream is the one sha256 loop: fileio.sha256_file and the store's hash_file both use it."""
    import hashlib

    from adapterhub.fileio import sha256_file, sha256_stream
    from adapterhub.store.reuse import NotRegularFileError, hash_file

    data = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB and a bit: several buffers and a partial one
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert hash_file(path) == (hashlib.sha256(data).hexdigest(), len(data))
    cut = (1 << 20) + 3
    assert hash_file(path, limit=cut) == (hashlib.sha256(data[:cut]).hexdigest(), cut)
    with path.open("rb", buffering=0) as fh:
        assert sha256_stream(fh, limit=0) == (hashlib.sha256(b"").hexdigest(), 0)
    link = tmp_path / "link"
    link.symlink_to(path)
    assert sha256_file(link) == sha256_file(path)  # a plain file hash follows links; a blob's never does
    with pytest.raises(NotRegularFileError):
        hash_file(link)


@pytest.mark.parametrize("extra", [-1, 0, 1, 3 << 20])
def test_a_large_file_is_hashed_in_place_and_gives_the_same_answer(tmp_path, extra):
    """From fileio.MAP_AT_LEAST bytes a whole file is hashed through a read-only mapping (no copy into a
    buffer); the answer is the streaming loop's, on either side of the threshold."""
    import hashlib

    from adapterhub.fileio import MAP_AT_LEAST
    from adapterhub.store.reuse import hash_file

    data = os.urandom(MAP_AT_LEAST + extra)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert hash_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize("change", ["grows", "shrinks"])
def test_a_file_resized_while_it_is_hashed_in_place_is_hashed_again_whole(tmp_path, monkeypatch, change):
    """The mapping covers the size fstat gave; a file another process resized meanwhile is hashed again
    from the start, so the answer always describes the whole file as it now is."""
    import hashlib
    import mmap as mmap_module

    from adapterhub.fileio import MAP_AT_LEAST, sha256_open_file

    path = tmp_path / "blob"
    path.write_bytes(b"a" * MAP_AT_LEAST)
    real_mmap = mmap_module.mmap

    def resizing_mmap(fd, length, **kwargs):
        mapped = real_mmap(fd, length, **kwargs)
        bytes(mapped[:16])  # pages are mapped: now the file changes under us
        if change == "grows":
            with path.open("ab") as out:
                out.write(b"b" * 1000)
        return mapped

    monkeypatch.setattr(mmap_module, "mmap", resizing_mmap)
    with path.open("rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        if change == "shrinks":  # told a larger size than it has (the mapping is refused): read instead
            size += 1 << 20
        got = sha256_open_file(fh, size)
    now = path.read_bytes()
    assert got == (hashlib.sha256(now).hexdigest(), len(now))


def test_a_file_that_cannot_be_mapped_is_read(tmp_path, monkeypatch):
    import hashlib
    import mmap as mmap_module

    from adapterhub.fileio import MAP_AT_LEAST
    from adapterhub.store.reuse import hash_file

    def refuse(*args, **kwargs):
        raise OSError(19, "No such device")  # ENODEV: a filesystem without mmap

    monkeypatch.setattr(mmap_module, "mmap", refuse)
    data = os.urandom(MAP_AT_LEAST)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert hash_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize("corrupt", [None, "big-a.safetensors", "big-b.safetensors", "small.json"])
def test_verify_of_large_and_small_files_names_exactly_the_corrupted_one(cache, tmp_path, monkeypatch, corrupt):
    """Two large files (one hashed beside the other on a helper thread) and a small one (on the calling
    thread, with the largest: one large file and small ones start no thread); each verdict is its own."""
    import hashlib
    import threading

    from adapterhub.store.cache_verify import HELPER_AT_LEAST

    files = {"big-a.safetensors": safetensors_bytes(HELPER_AT_LEAST // 4 + 64, name="a"),
             "big-b.safetensors": safetensors_bytes(HELPER_AT_LEAST // 4 + 16, name="b", seed=2),
             "small.json": b'{"r": 8}'}
    manifest = manifest_for(files)
    pulled = pull(manifest, sources=[LocalDirSource(dir_with(tmp_path / "src", files))])
    if corrupt:
        target = pulled.files[corrupt]
        os.chmod(target, 0o644)
        with open(target, "r+b") as fh:  # a hard link: the blob changes too
            fh.seek(len(files[corrupt]) - 1)
            fh.write(b"\x00" if files[corrupt][-1:] != b"\x00" else b"\x01")
    started: list[str] = []
    start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    report = verify(manifest.name)
    assert report.evicted_blobs == ([hashlib.sha256(files[corrupt]).hexdigest()] if corrupt else [])
    assert report.ok == (corrupt is None)
    assert len(started) == 1  # the second large file's helper; the small file never gets one


def test_verify_of_one_large_file_and_small_ones_starts_no_thread(cache, tmp_path, monkeypatch):
    import threading

    from adapterhub.store.cache_verify import HELPER_AT_LEAST

    files = {"adapter.safetensors": safetensors_bytes(HELPER_AT_LEAST // 4 + 64), "a.json": b"{}", "b.json": b"[]"}
    manifest = manifest_for(files)
    pull(manifest, sources=[LocalDirSource(dir_with(tmp_path / "src", files))])
    started: list[str] = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: (started.append(thread.name), start(thread))[1])
    assert verify(manifest.name).ok and started == []
