"""The ``adapters`` library's fusion directories (``adapter_fusion_config.json`` + weights), in our names."""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import NotFoundError, SchemaError, SchemaProblem
from ...jsonio import load_strict
from ...manifest.adapters_config import fusion_config
from ...manifest.derive import FUSION_CONFIG as FUSION_CONFIG_FILE
from ..arch import Binding
from ..module_paths import layer_index, match_suffix
from ..package import AdapterPackage, BaseFacts
from .weights import load_weights


def read_adapters_fusion_dir(directory: Path, binding: Binding) -> AdapterPackage:
    """An ``adapters``-library fusion directory (``adapter_fusion_config.json`` + weights) in our names."""
    meta = load_strict(directory / FUSION_CONFIG_FILE)
    if not isinstance(meta, dict) or not isinstance(meta.get("adapter_names"), list):
        raise SchemaError(str(directory / FUSION_CONFIG_FILE), [SchemaProblem("/adapter_names", "missing")])
    members = [str(m) for m in meta["adapter_names"]]
    cfg = dict(meta.get("config") or {})
    lib_name = str(meta.get("name") or ",".join(members))
    tensors = load_weights(directory, "model_adapter_fusion", "pytorch_model_adapter_fusion.bin")
    sites = {k.rsplit(".adapters", 1)[0] + ".adapter_fusion_layer": v
             for k, v in binding.family.library_bottleneck_sites.items()}
    layers = layer_index(binding)
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        hit = match_suffix(key, layers)
        infix = f".{lib_name}."
        if hit is None or infix not in f".{hit[1]}":
            raise SchemaError(str(directory), [SchemaProblem("/", f"weight {key!r} is not a fusion weight of {lib_name!r}")])
        container, leaf = f".{hit[1]}".split(infix, 1)
        loc = sites.get(container.lstrip("."))
        if loc is None:
            raise SchemaError(str(directory), [SchemaProblem("/", f"weight {key!r}: unknown fusion location")])
        out[f"layers.{layers[hit[0]].index}.{loc}.{leaf}"] = value
    config = fusion_config(cfg, members)
    if not out:
        raise NotFoundError(f"{directory}: no fusion weights")
    base = BaseFacts(meta.get("model_type") or binding.model_type, int(meta.get("hidden_size") or binding.hidden_size),
                     binding.num_hidden_layers, num_decoder_layers=binding.num_decoder_layers)
    return AdapterPackage(method="fusion", config=config, tensors=out, base=base, name=None, source=str(directory))
