"""Legacy archives: pinned, filtered on extraction, pickle weights converted once with weights_only."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile

import pytest
from store_support import blobs, leftovers, manifest_for, put_repo, sha, views

from adapterhub.errors import IntegrityError, UnsafeFileError, UnsafePathError
from adapterhub.store import check_safetensors, gc, pull

pytest_plugins = ["store_fixtures"]
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
