"""An archived entry's architecture file (a leave-out variant) becomes the config the ``adapters`` library
builds from that file: the library's weights fit it and compute the library's outputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support.archived_fixtures import LEAVE_OUT_ARCHITECTURE, entry, pin, version, write_archive
from support.runtime_helpers import hidden, inputs_for, tiny_config, tiny_model

from adapterhub.manifest import manifest_to_dict
from adapterhub.registry import open_index, resolve
from adapterhub.registry.archived import import_adapterhub_index, legacy_name
from adapterhub.runtime import wrap
from adapterhub.runtime.formats import read_adapter_dir

OVERRIDES = {"reduction_factor": 4, "non_linearity": "swish"}


def test_leave_out_architecture_matches_what_the_adapters_library_builds(tmp_path):
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    doc = entry([version("1", "https://example.org/ner.zip", pin(b"zip"))], using="pfeiffer-leave-out", **OVERRIDES)
    src = write_archive(tmp_path / "archive", {"org/ner_leave_out": doc}, {"pfeiffer-leave-out": LEAVE_OUT_ARCHITECTURE})
    report = import_adapterhub_index(src, tmp_path / "index")
    assert report.failures == [] and report.refused == []
    imported = resolve(open_index(tmp_path / "index"), legacy_name("org", "ner_leave_out")).manifest
    config = manifest_to_dict(imported)["adapter"]["config"]

    # what the library builds from the same architecture file (with the entry's overrides), on a tiny BERT
    inputs = inputs_for("bert")
    ref = adapters.AutoAdapterModel.from_config(tiny_config("bert"))
    base = tiny_model("bert")
    ref.base_model.load_state_dict(base.state_dict(), strict=False)
    ref.add_adapter("a", config=adapters.BnConfig(**{**LEAVE_OUT_ARCHITECTURE, **OVERRIDES}))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if ".a." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    layers = {n.split(".layer.")[1].split(".")[0] for n, _ in ref.named_parameters() if ".a." in n}
    assert layers == {"1"}  # the library left layer 0 out
    ref.set_active_adapters("a")
    ref.eval()
    want = hidden(ref.base_model, inputs)
    ref.save_adapter(str(tmp_path / "lib"), "a", use_safetensors=True)

    # the library's tensors under the importer's config: every shape must fit, and the outputs agree
    h = wrap(base)
    package = read_adapter_dir(tmp_path / "lib", h.binding)
    h.load_package(dataclasses.replace(package, config=config, manifest=None), name="imported", force=True)
    got = hidden(base, inputs)
    scale = max(1.0, want.abs().max().item())
    assert (got - want).abs().max().item() <= 1e-5 * scale
    assert (want - hidden(tiny_model("bert"), inputs)).abs().max().item() > 1e-3 * scale  # the adapter does act
