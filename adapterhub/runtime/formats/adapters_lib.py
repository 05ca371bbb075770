"""Reading ``adapters``-library adapter directories (``adapter_config.json`` + weights).

Weights come from ``adapter.safetensors`` or, for older saves, ``pytorch_adapter.bin`` read only
through the store's weights-only converter (never plain pickle). Legacy key infixes are renamed as the
library does on load; v1-era activation names are renamed when ``version`` is absent; LoRA configs
saved before adapters 1.1.0 with ``r != alpha`` get ``alpha := r`` (library PR #770).

A prediction head saved with the adapter (``head_config.json``) becomes the adapter's head when it is
the task model's own head, else the directory is refused with the reason (:mod:`.adapters_heads`).

Conversion to our format is exact: bottleneck and Compacter tensors are renamed; LoRA matrices
keep their ``[r, in]`` / ``[out, r]`` layout (GPT-2's fused ``c_attn`` is split per q/k/v); the
library's IA3 (every target scaled on its output by ``l * alpha``) becomes our IA3 with
``l := l * alpha`` and no ``feedforward_modules``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from packaging.version import InvalidVersion, Version

from ...manifest.adapters_config import bottleneck_config, unsupported
from ..arch import Binding
from ..package import AdapterPackage, BaseFacts
from .adapters_heads import attach_head, read_library_head
from .keys import layer_index, match_suffix, slot_index
from .weights import load_weights

LEGACY_RENAMES = {
    "attention_text_task_adapters": "adapters", "attention_text_lang_adapters": "adapters",
    "layer_text_task_adapters": "adapters", "layer_text_lang_adapters": "adapters",
    "invertible_lang_adapters": "invertible_adapters",
}


def _version(meta: dict[str, Any]) -> Version | None:
    raw = meta.get("version")
    if not isinstance(raw, str):
        return None
    try:
        return Version(raw.removeprefix("adapters."))
    except InvalidVersion:
        return None


def read_adapters_dir(directory: Path, meta: dict[str, Any], binding: Binding | None = None) -> AdapterPackage:
    if binding is None:
        raise unsupported("/", "reading an adapters-library directory needs the target model (use AdapterModel.load)")
    cfg = dict(meta.get("config") or {})
    name = meta.get("name")
    tensors = load_weights(directory)
    renamed = {}
    for key, value in tensors.items():
        for old, new in LEGACY_RENAMES.items():
            key = key.replace(old, new)
        renamed[key] = value
    arch = cfg.get("architecture")
    if arch is None:
        method, config, ours = _bottleneck(cfg, meta, renamed, name, binding)
    elif arch == "lora":
        method, config, ours = _lora(cfg, meta, renamed, name, binding)
    elif arch == "prefix_tuning":
        from .adapters_prefix import convert_prefix

        method, config, ours = convert_prefix(cfg, renamed, name, binding)
    else:
        raise unsupported("/config/architecture", f"{arch!r} adapters are not supported by adapterhub's runtime")
    model_type = meta.get("model_type") or binding.model_type
    hidden = int(meta.get("hidden_size") or binding.hidden_size)
    base = BaseFacts(model_type, hidden, binding.num_hidden_layers, num_decoder_layers=binding.num_decoder_layers)
    library_head = read_library_head(directory, binding.model_type)
    head, head_type, num_labels = ({}, None, None) if library_head is None else \
        attach_head(library_head, binding.root or binding.backbone, directory)
    return AdapterPackage(method=method, config=config, tensors=ours, base=base, head=head, head_type=head_type,
                          num_labels=num_labels, name=name, source=str(directory))


def _strip_to_layer(key: str, layers: dict[str, Any]) -> tuple[Any, str] | None:
    hit = match_suffix(key, layers)
    if hit is None:
        return None
    return layers[hit[0]], hit[1]


def _bottleneck(cfg: dict[str, Any], meta: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
                binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    method, config = bottleneck_config(cfg, "version" in meta)
    ours = _bottleneck_tensors(tensors, name, binding, bool(cfg.get("ln_before")))
    return method, config, ours


def _bottleneck_tensors(tensors: dict[str, torch.Tensor], name: str, binding: Binding,
                        ln_before: bool) -> dict[str, torch.Tensor]:
    layers = layer_index(binding)
    sites = binding.family.library_bottleneck_sites
    out: dict[str, torch.Tensor] = {}
    shared = re.compile(rf"(?:^|\.)shared_parameters\.{re.escape(name)}\.(.+)$")
    for key, value in tensors.items():
        m = shared.search(key)
        if m:
            out[f"shared.{m.group(1)}"] = value
            continue
        hit = _strip_to_layer(key, layers)
        if hit is None:
            raise unsupported("/", f"weight {key!r} is not inside a transformer layer of this model")
        layer, rest = hit
        infix = f".{name}."
        if infix not in f".{rest}":
            raise unsupported("/", f"weight {key!r} does not belong to adapter {name!r}")
        container, leaf = f".{rest}".split(infix, 1)
        loc = sites.get(container.lstrip("."))
        if loc is None:
            raise unsupported("/", f"weight {key!r}: unknown adapter location {container.lstrip('.')!r}")
        out[f"layers.{layer.index}.{loc}.{_bottleneck_leaf(leaf, ln_before)}"] = value
    return {k: v for k, v in out.items() if k is not None}


def _bottleneck_leaf(leaf: str, ln_before: bool) -> str:
    parts = leaf.split(".")
    if parts[0] == "adapter_down":
        index = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
        rest = ".".join(parts[2:]) if index is not None else ".".join(parts[1:])
        if ln_before and index == 0:
            return f"ln_before.{rest}"
        return f"down.{rest}"
    if parts[0] == "adapter_up":
        return "up." + ".".join(parts[1:])
    if parts[0] == "adapter_norm_before":
        return "ln_before." + ".".join(parts[1:])
    if parts[0] == "adapter_norm_after":
        return "ln_after." + ".".join(parts[1:])
    return leaf  # gate.weight, gate.bias, scaling


def _lora(cfg: dict[str, Any], meta: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
          binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    if cfg.get("use_gating"):
        raise unsupported("/config/use_gating", "gated LoRA is not supported")
    if cfg.get("vera_d") is not None or cfg.get("vera_b") is not None:
        raise unsupported("/config/vera_d", "VeRA is not supported")
    scale_mode = cfg.get("composition_mode", "add") == "scale"
    if cfg.get("use_dora"):
        raise unsupported("/config/use_dora", "the adapters library's DoRA differs from PEFT's (unscaled norm, "
                           "scaled bias); adapterhub implements PEFT's DoRA only")
    r, alpha = int(cfg.get("r", 8)), float(cfg.get("alpha", 8))
    version = _version(meta)
    if not scale_mode and (version is None or version < Version("1.1.0")) and r != alpha:
        alpha = float(r)
    locs = binding.family.library_lora_locations
    targets: list[str] = []
    if cfg.get("selfattn_lora", True):
        targets += [m for m in ("q", "k", "v") if m in (cfg.get("attn_matrices") or [])]
    if cfg.get("intermediate_lora"):
        targets.append(locs["intermediate"])
    if cfg.get("output_lora"):
        targets.append(locs["output"])
    slots = slot_index(binding)
    ours: dict[str, torch.Tensor] = {}
    enabled = [m for m in ("q", "k", "v") if m in targets]
    for key, value in tensors.items():
        infix = f".loras.{name}."
        if infix not in key:
            raise unsupported("/", f"weight {key!r} does not belong to LoRA adapter {name!r}")
        module_path, leaf = key.split(infix, 1)
        hit = match_suffix(module_path, slots)
        if hit is None:
            raise unsupported("/", f"weight {key!r}: {module_path!r} is not a projection this runtime knows")
        ref = slots[hit[0]]
        group = [s for s in ref.slots if s.parts == 1 or s.key in enabled]
        for j, slot in enumerate(group):
            prefix = f"layers.{ref.layer.index}.{slot.key}"
            if scale_mode:
                vec = value.reshape(-1)
                n = vec.shape[0] // len(group)
                ours[f"{prefix}.ia3_l"] = vec[j * n:(j + 1) * n] * alpha
            elif leaf == "lora_A":
                ours[f"{prefix}.lora_A"] = value[j * r:(j + 1) * r] if len(group) > 1 else value
            elif leaf == "lora_B":
                n = value.shape[0] // len(group)
                ours[f"{prefix}.lora_B"] = value[j * n:(j + 1) * n]
            else:
                raise unsupported("/", f"weight {key!r}: unknown LoRA tensor {leaf!r}")
    leave_out = sorted(cfg.get("leave_out") or [])
    if scale_mode:
        config: dict[str, Any] = {"target_modules": targets, "feedforward_modules": []}
        method = "ia3"
    else:
        config = {"r": r, "alpha": alpha, "target_modules": targets}
        if cfg.get("dropout"):
            config["dropout"] = cfg["dropout"]
        method = "lora"
    if leave_out:
        config["leave_out"] = leave_out
    return method, config, {k: v.contiguous() for k, v in ours.items()}
