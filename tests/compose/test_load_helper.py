"""``adapterhub.load(model, "hf:ORG/REPO")``: pull (verified) then attach, the same as attaching the directory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from support.hub_repos import BASE_DIR, PEFT_DIR, put_fixture_repos
from support.paths import REPO

import adapterhub
from adapterhub.runtime import wrap


def _base():
    from transformers import AutoModel

    return AutoModel.from_pretrained(BASE_DIR).eval()


def _out(model) -> torch.Tensor:
    ids = torch.tensor([[5, 17, 23, 42, 8, 3]])
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state.double()


def test_load_hf_reference_equals_attaching_the_directory(hub, cache):
    put_fixture_repos(hub.server)
    pulled_model = _base()
    handle = adapterhub.load(pulled_model, "hf:org/peft-lora", endpoint=hub.endpoint)
    assert handle.adapters == ("org-peft-lora",)
    direct = _base()
    wrap(direct).load(PEFT_DIR)
    plain = _out(_base())
    got, want = _out(pulled_model), _out(direct)
    assert not torch.allclose(got, plain)  # the adapter changes the output
    scale = want.abs().max().item()
    assert torch.allclose(got, want, rtol=0, atol=1e-6 * max(scale, 1.0))


def test_load_is_exported_lazily():
    code = "import sys, adapterhub; assert 'adapterhub.loading' not in sys.modules; " \
           "assert 'torch' not in sys.modules; f = adapterhub.load; assert f.__module__ == 'adapterhub.loading'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    with pytest.raises(AttributeError):
        adapterhub.no_such_thing  # noqa: B018


def test_load_a_fusion_folder_attaches_its_members_first(hub, cache):
    from support.hub_repos import files_of
    from support.paths import REFERENCE
    from support.store_support import put_repo

    put_fixture_repos(hub.server)
    root = REFERENCE / "adapters" / "bert" / "fuse_seq_bn" / "safetensors"
    put_repo(hub.server, "org/fused", {f"{d}/{n}": b for d in ("a", "b", "fusion") for n, b in files_of(root / d).items()})
    model = _base()
    handle = adapterhub.load(model, "hf:org/fused:fusion", endpoint=hub.endpoint)
    assert set(handle.adapters) == {"org-fused-a", "org-fused-b", "org-fused-fusion"}
    assert not torch.allclose(_out(model), _out(_base()))
