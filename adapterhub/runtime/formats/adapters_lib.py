"""Reading ``adapters``-library adapter directories (``adapter_config.json`` + weights): the generic driver.

The driver loads and renames the weights, reads the head and the base facts; the registered method
whose ``adapters_architecture`` is the config's ``architecture`` (``bottleneck`` for the library's
BnConfig, which has none) converts config and tensors (``Method.from_adapters``, in the method's module).

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

from pathlib import Path
from typing import Any

from ...manifest.adapters_config import unsupported
from ..arch import Binding
from ..methods import REGISTRY
from ..package import AdapterPackage, BaseFacts
from .adapters_heads import attach_head, read_library_head
from .weights import load_weights

LEGACY_RENAMES = {
    "attention_text_task_adapters": "adapters", "attention_text_lang_adapters": "adapters",
    "layer_text_task_adapters": "adapters", "layer_text_lang_adapters": "adapters",
    "invertible_lang_adapters": "invertible_adapters",
}


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
    arch = cfg.get("architecture") or "bottleneck"  # the library's BnConfig has no architecture
    reader = next((m for m in REGISTRY.values() if m.adapters_architecture == arch), None)
    if reader is None:
        raise unsupported("/config/architecture", f"{arch!r} adapters are not supported by adapterhub's runtime")
    method, config, ours = reader.from_adapters(cfg, meta, renamed, name, binding)
    model_type = meta.get("model_type") or binding.model_type
    hidden = int(meta.get("hidden_size") or binding.hidden_size)
    base = BaseFacts(model_type, hidden, binding.num_hidden_layers, num_decoder_layers=binding.num_decoder_layers)
    library_head = read_library_head(directory, binding.model_type)
    head, head_type, num_labels = ({}, None, None) if library_head is None else \
        attach_head(library_head, binding.root or binding.backbone, directory)
    return AdapterPackage(method=method, config=config, tensors=ours, base=base, head=head, head_type=head_type,
                          num_labels=num_labels, name=name, source=str(directory))


