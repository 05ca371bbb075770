"""A Hub repo whose weights are a pickle (``adapter_model.bin``): converted at pull time by the weights-only
loader only after the bytes matched the Hub's hash; the view holds safetensors only; a hostile or
tampered pickle publishes nothing."""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file
from support.hub_repos import BASE_DIR, BASE_ID, PEFT_DIR
from support.store_support import put_repo

from adapterhub.errors import IntegrityError, UnsafeFileError
from adapterhub.runtime import wrap
from adapterhub.store import CacheLayout, gc, pull, remove_cached


def _pickled(tensors: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.fixture
def bin_repo(hub, cache):
    if not PEFT_DIR.is_dir():
        pytest.skip("reference fixtures missing")
    put_repo(hub.server, BASE_ID, {"config.json": (BASE_DIR / "config.json").read_bytes()})
    tensors = load_file(PEFT_DIR / "adapter_model.safetensors")
    put_repo(hub.server, "org/pickled", {"adapter_config.json": (PEFT_DIR / "adapter_config.json").read_bytes(),
                                         "adapter_model.bin": _pickled(tensors)})
    return tensors


def test_pickle_weights_become_safetensors_at_pull_time(bin_repo, hub, cache):
    pulled = pull("hf:org/pickled", endpoint=hub.endpoint)
    assert set(pulled.files) == {"adapter_config.json", "adapter_model.safetensors"}
    got = load_safetensors((pulled.path / "adapter_model.safetensors").read_bytes())
    assert got.keys() == bin_repo.keys() and all(torch.equal(got[k], bin_repo[k]) for k in got)
    converted = pulled.manifest.extensions["x-adapterhub-converted"]["adapter_model.safetensors"]
    assert converted["from"] == "adapter_model.bin"
    from transformers import AutoModel

    model = AutoModel.from_pretrained(BASE_DIR)
    wrap(model).load(pulled.path)  # reads the converted safetensors
    # The converted blob collected: the next pull converts again from the repo's pickle.
    converted_bytes = (pulled.path / "adapter_model.safetensors").read_bytes()
    entry = next(f for f in pulled.manifest.files if f.path == "adapter_model.safetensors")
    remove_cached(pulled.name)
    gc()
    assert not CacheLayout.default().blob(entry.sha256).is_file()
    again = pull("hf:org/pickled", endpoint=hub.endpoint)
    assert again.files["adapter_model.safetensors"].read_bytes() == converted_bytes


def test_a_hostile_pickle_is_refused_and_nothing_is_published(hub, cache):
    put_repo(hub.server, BASE_ID, {"config.json": (BASE_DIR / "config.json").read_bytes()})
    put_repo(hub.server, "org/evil", {"adapter_config.json": (PEFT_DIR / "adapter_config.json").read_bytes(),
                                      "adapter_model.bin": pickle.dumps({"w": _Evil()})})
    with pytest.raises(UnsafeFileError, match="convert it yourself"):
        pull("hf:org/evil", endpoint=hub.endpoint)
    assert not (cache / "adapters").exists() or not any((cache / "adapters").iterdir())
    assert not (cache / "hub").exists() or not list((cache / "hub").rglob("manifests/*.json"))


def test_a_tampered_pickle_is_refused_before_it_is_read(bin_repo, hub, cache, fault_plan, monkeypatch):
    import adapterhub.store.hub_derive as hub_derive

    def never(*args, **kwargs):
        raise AssertionError("unpickled bytes that did not match the Hub's hash")

    monkeypatch.setattr(hub_derive, "pickle_to_safetensors", never)
    fault_plan.flip_byte(path="adapter_model.bin", times=None)
    with pytest.raises(IntegrityError):
        pull("hf:org/pickled", endpoint=hub.endpoint)


def test_conversion_is_byte_stable():
    from adapterhub.store.convert import pickle_to_safetensors

    data = _pickled({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.float16)})
    assert len({pickle_to_safetensors(data, "x") for _ in range(24)}) == 1
