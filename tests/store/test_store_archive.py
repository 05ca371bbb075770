"""Legacy archives: pinned, filtered on extraction, pickle weights converted once with weights_only."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import struct
import tarfile
import zipfile

import pytest
from support.store_support import blobs, leftovers, manifest_for, put_repo, sha, views

from adapterhub.errors import IntegrityError, UnsafeFileError, UnsafePathError
from adapterhub.store import check_safetensors, extract, gc, pull
from adapterhub.store.extract import read_archive

torch = pytest.importorskip("torch")


def state_dict_bytes(**tensors) -> bytes:
    buf = io.BytesIO()
    torch.save(tensors, buf)
    return buf.getvalue()


WEIGHTS = {"adapter.down.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
           "adapter.up.weight": torch.ones(4, 3)}


def make_zip(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def legacy_zip() -> bytes:
    return make_zip({"sst2/adapter_config.json": b'{"config": {"reduction_factor": 16}}',
                     "sst2/pytorch_adapter.bin": state_dict_bytes(**WEIGHTS),
                     "sst2/pytorch_model_head.bin": state_dict_bytes(**{"head.weight": torch.zeros(2, 4)}),
                     "sst2/README.md": b"old card"})


def archive_manifest(hub_server, data: bytes, *, pinned: str | None = None, fmt: str = "zip",
                     name: str = "adapter.zip"):
    commit = put_repo(hub_server, "org/legacy", {name: data})
    url = f"{hub_server.endpoint}/org/legacy/resolve/{commit}/{name}"
    return manifest_for({}, [{"type": "archive", "url": url, "sha256": pinned or sha(data), "format": fmt,
                              "layout": "adapters-library"}], name="legacy-adapter")


def test_zip_is_converted_to_safetensors_once(cache, hub_server):
    manifest = archive_manifest(hub_server, legacy_zip())
    result = pull(manifest)
    assert sorted(result.files) == ["adapter.safetensors", "adapter_config.json", "head.safetensors"]
    check_safetensors(result.files["adapter.safetensors"])
    from safetensors.torch import load_file

    loaded = load_file(result.files["adapter.safetensors"])
    assert set(loaded) == set(WEIGHTS) and torch.equal(loaded["adapter.down.weight"], WEIGHTS["adapter.down.weight"])
    derived = json.loads((result.path / "adapterhub.json").read_text())
    assert sorted(f["path"] for f in derived["files"]) == sorted(result.files)
    assert derived["x-adapterhub-derived"]["from_archive_sha256"] == manifest.sources[0].sha256
    assert (cache / "derived" / f"{manifest.sources[0].sha256}.json").is_file()
    hub_server.stop()
    assert pull(manifest).downloaded == 0  # warm: no network, no conversion
    gc()  # the archive blob itself is garbage once converted; the derived record stays
    assert pull(manifest, offline=True).files["adapter.safetensors"].exists()
    assert leftovers(cache) == []


def test_archive_hash_mismatch_means_nothing_is_unpickled(cache, hub_server, tmp_path):
    marker = tmp_path / "pwned"
    evil = make_zip({"pytorch_adapter.bin": _evil_pickle(marker)})
    manifest = archive_manifest(hub_server, evil, pinned="f" * 64)
    with pytest.raises(IntegrityError):
        pull(manifest)
    assert not marker.exists()
    assert blobs(cache) == [] and views(cache) == []


def test_pinned_malicious_pickle_is_refused_by_weights_only_loader(cache, hub_server, tmp_path):
    marker = tmp_path / "pwned"
    manifest = archive_manifest(hub_server, make_zip({"pytorch_adapter.bin": _evil_pickle(marker)}))
    with pytest.raises(UnsafeFileError, match="weights-only"):
        pull(manifest)
    assert not marker.exists()
    assert views(cache) == []


@pytest.mark.parametrize("members, error", [
    ({"../pytorch_adapter.bin": b"x"}, UnsafePathError),
    ({"/abs/pytorch_adapter.bin": b"x"}, UnsafePathError),
    ({"a\\..\\..\\x": b"x"}, UnsafePathError),
    ({"Adapter_Config.json": b"{}", "adapter_config.json": b"{}"}, UnsafePathError),
])
def test_unsafe_zip_members(cache, hub_server, members, error):
    with pytest.raises(error):
        pull(archive_manifest(hub_server, make_zip(members)))
    assert views(cache) == []


def test_zip_symlink_and_duplicate_members_are_refused(cache, hub_server):
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        pull(archive_manifest(hub_server, make_zip({"adapter_config.json": b"{}"}, symlink="pytorch_adapter.bin")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("pytorch_adapter.bin", b"a")
        zf.writestr("pytorch_adapter.bin", b"b")
    with pytest.raises(UnsafePathError, match="twice"):
        pull(archive_manifest(hub_server, buf.getvalue()))


def test_tar_with_symlink_is_refused(cache, hub_server):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("pytorch_adapter.bin")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        pull(archive_manifest(hub_server, buf.getvalue(), fmt="tar.gz", name="a.tar.gz"))


def _evil_pickle(marker) -> bytes:
    """A pickle whose loading would create ``marker`` (what the weights-only loader must refuse)."""
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    torch.save({"w": Evil()}, buf)
    return buf.getvalue()


# --- damaged archives: every library failure is a typed error, and nothing is left behind ----------

CONFIG = b'{"config": {"reduction_factor": 16}}' * 20


def _stored_zip(compression: int = zipfile.ZIP_STORED) -> bytearray:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        zf.writestr("adapter_config.json", CONFIG)
    return bytearray(buf.getvalue())


def bad_crc() -> bytes:
    data = _stored_zip()
    data[data.index(b"reduction_factor")] ^= 0x20  # one bit of the member's bytes
    return bytes(data)


def name_mismatch() -> bytes:
    data = _stored_zip()
    at = data.index(b"adapter_config.json")  # the local header's copy; the central directory keeps its own
    data[at:at + 7] = b"retpada"
    return bytes(data)


def unknown_compression() -> bytes:
    data = _stored_zip()
    data[8:10] = struct.pack("<H", 99)  # local header
    central = data.index(b"PK\x01\x02")
    data[central + 10:central + 12] = struct.pack("<H", 99)
    return bytes(data)


def corrupt_deflate() -> bytes:
    data = _stored_zip(zipfile.ZIP_DEFLATED)
    start = 30 + len("adapter_config.json")
    data[start:start + 12] = b"\xff" * 12
    return bytes(data)


def zip_device() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("pytorch_adapter.bin")
        info.external_attr = (stat.S_IFCHR | 0o666) << 16
        zf.writestr(info, b"")
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def truncated_tar_gz() -> bytes:
    data = _tar({"adapter_config.json": CONFIG * 50, "pytorch_adapter.bin": bytes(range(256)) * 64}, "w:gz")
    return data[: len(data) // 2]


def truncated_tar_member() -> bytes:
    return _tar({"adapter_config.json": CONFIG * 50})[: 512 + 700]


DAMAGED = {
    "bad CRC": (bad_crc, "zip", "Bad CRC"),
    "local/central name mismatch": (name_mismatch, "zip", "differ"),
    "unknown compression": (unknown_compression, "zip", "compression method"),
    "corrupt deflate stream": (corrupt_deflate, "zip", "zlib.error"),
    "device member": (zip_device, "zip", "device"),
    "truncated tar.gz": (truncated_tar_gz, "tar.gz", "truncated"),
    "truncated tar member": (truncated_tar_member, "tar", "unexpected end of data"),
    "garbage after gzip": (lambda: gzip.compress(_tar({"a": b"a"})) + b"junk", "tar.gz", "after the gzip stream"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_damaged_archives_are_typed_errors(kind):
    """Regression: BadZipFile, zlib.error, NotImplementedError, EOFError and tarfile.ReadError escaped."""
    build, fmt, needle = DAMAGED[kind]
    with pytest.raises(UnsafeFileError, match=needle):
        read_archive(build(), fmt, "legacy.archive")


def test_a_damaged_archive_leaves_no_derived_record_view_or_temp_file(cache, hub_server):
    manifest = archive_manifest(hub_server, bad_crc())
    with pytest.raises(UnsafeFileError, match="Bad CRC"):
        pull(manifest)
    assert views(cache) == [] and leftovers(cache) == []
    assert not (cache / "derived").exists() or not list((cache / "derived").iterdir())
    assert blobs(cache) == [manifest.sources[0].sha256]  # only the (pinned, verified) download itself


def test_gzip_layer_is_inflated_under_a_cap(monkeypatch):
    monkeypatch.setattr(extract, "MAX_UNPACKED", 1 << 20)
    monkeypatch.setattr(extract, "TAR_OVERHEAD", 0)
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in a few KiB
    assert len(bomb) < 64 << 10
    with pytest.raises(UnsafeFileError, match="unpacks to more than"):
        read_archive(bomb, "tar.gz", "bomb.tar.gz")


def test_archive_ingestion_is_driven_through_the_public_archive_pull(cache):
    """store/archive.py needs only an ArchivePull (manifest, cache, owner, download), not the puller's privates."""
    from adapterhub.manifest import ArchiveSource
    from adapterhub.store.archive import ArchivePull, ingest_archive, offline_manifest
    from adapterhub.store.layout import CacheLayout, new_owner

    data = legacy_zip()
    manifest = manifest_for({}, [{"type": "archive", "url": "https://example.invalid/a.zip", "sha256": sha(data),
                                  "format": "zip", "layout": "adapters-library"}], name="legacy-adapter")
    archives = [s for s in manifest.sources if isinstance(s, ArchiveSource)]
    fetched: list[str] = []

    def download(url, writer):
        fetched.append(url)
        writer.write(data)

    layout = CacheLayout.default(cache)
    derived = ingest_archive(ArchivePull(manifest, layout, new_owner(), download), archives)
    assert fetched == ["https://example.invalid/a.zip"]
    assert sorted(f.path for f in derived.files) == ["adapter.safetensors", "adapter_config.json", "head.safetensors"]
    for f in derived.files:
        if f.path.endswith(".safetensors"):
            check_safetensors(layout.blob(f.sha256))

    def no_network(url, writer):
        raise AssertionError("an ingested archive is not downloaded again")

    again = ArchivePull(manifest, layout, new_owner(), no_network)
    assert ingest_archive(again, archives).files == derived.files
    assert offline_manifest(again) == (derived, sha(data))
