"""PEFT adapter directories: the generic reader and writer; each method owns its own mapping.

The driver finds the registered method whose ``peft_claims`` accepts ``adapter_config.json``, maps
every tensor's module path to our (layer, slot) and hands the method one :class:`PeftPiece` per slot
(``from_peft``); export groups an adapter's targets per module and asks the method for its tensors and
config keys (``to_peft``). The driver owns what every method shares: the ``base_model.model.`` prefix,
module-path matching, ``leave_out``, ``modules_to_save`` as the adapter's head, ``task_type``, and
the staged write. Today LoRA, DoRA and IA3 have a PEFT form.

PEFT stores ``base_model.model.<module path>.lora_A.weight`` (``[r, in]``), ``lora_B.weight``
(``[out, r]``), ``lora_magnitude_vector`` (DoRA, ``[out]``) and ``ia3_l`` (``[out, 1]``, or
``[1, in]`` for feed-forward modules). PEFT adapts a fused projection (GPT-2's ``c_attn``, Phi-3's
``qkv_proj`` and ``gate_up_proj``, GPT-NeoX's ``query_key_value``) as one module, so it lands on the
family's whole-module slot (``qkv``, ``ffn_gate_in``); a family that offers only slices of a module gets
one piece per slice, sharing ``A`` (exact: the rows of ``B A`` are the rows of each slice). Export writes
one PEFT module per projection (q/k/v slots of a fused projection are stacked back: ``A`` rows
concatenated, ``B`` block-diagonal, so a q+v LoRA of rank r exports with rank 2r on ``c_attn``
via ``rank_pattern``). Modules saved whole (``modules_to_save``) become the adapter's head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ...fileio import staged_directory
from ...manifest.peft_config import peft_type_refusal
from ...manifest.peft_match import PeftMatch
from ...manifest.peft_targets import identity_init, init_refusal, is_all_linear
from ..arch import Binding
from ..heads import split_head
from ..methods import REGISTRY, Method
from ..methods.base import PeftPiece, peft_unsupported
from ..module_paths import match_suffix, module_slots, slot_index
from ..package import AdapterPackage, BaseFacts
from ..safetensors_io import write_safetensors
from .weights import load_weights

PREFIX = "base_model.model."
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
PEFT_FILES = (WEIGHTS_FILE, CONFIG_FILE, "adapter_model.bin")
"""What a PEFT adapter directory consists of (an older ``.bin`` left by an earlier save is removed)."""
TASK_TYPES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ForSequenceClassification",), "SEQ_CLS"), (("ForTokenClassification",), "TOKEN_CLS"),
    (("ForQuestionAnswering",), "QUESTION_ANS"), (("ForCausalLM", "LMHeadModel"), "CAUSAL_LM"),
    (("ForConditionalGeneration",), "SEQ_2_SEQ_LM"),
)


def peft_method(cfg: dict[str, Any]) -> type[Method]:
    """The registered method whose PEFT form this ``adapter_config.json`` is (refused when none claims it)."""
    claims = [m for m in REGISTRY.values() if m.peft_claims(cfg)]
    if not claims:
        raise peft_unsupported("/peft_type", peft_type_refusal(
            cfg.get("peft_type"), ", ".join(m for m, c in REGISTRY.items() if c.peft_type)))
    return claims[0]


def read_peft_dir(directory: Path, cfg: dict[str, Any], binding: Binding | None = None) -> AdapterPackage:
    if binding is None:
        raise peft_unsupported("/", "reading a PEFT directory needs the target model (use AdapterModel.load)")
    method = peft_method(cfg)
    method.check_peft_config(cfg)
    slots = slot_index(binding)
    pieces: list[PeftPiece] = []
    whole: dict[str, torch.Tensor] = {}  # modules_to_save (and anything else saved whole)
    seen_layers: set[int] = set()
    for key, value in load_weights(directory, "adapter_model", "adapter_model.bin").items():
        path = key.removeprefix(PREFIX)
        leaf = next((lf for lf in method.peft_leaves if path.endswith("." + lf)), None)
        if leaf is None:
            whole[path.replace(".modules_to_save.default", "").replace(".original_module", "")] = value
            continue
        module_path = path[: -len(leaf) - 1]
        hit = match_suffix(module_path, slots)
        if hit is None or hit[1]:
            raise peft_unsupported("/target_modules", f"{module_path!r} is not a projection adapterhub can target "
                                   f"(PEFT adapted it for target_modules={cfg.get('target_modules')!r}); the adapter "
                                   "changes a module outside the attention and feed-forward projections")
        ref = slots[hit[0]]
        seen_layers.add(ref.layer.index)
        placed = module_slots(ref.slots)
        pieces += [PeftPiece(leaf, value, module_path, f"layers.{ref.layer.index}.{slot.key}",
                             slot.key.removeprefix("cross_"), j, len(placed)) for j, slot in enumerate(placed)]
    if not identity_init(cfg):
        _check_all_held(cfg, _root(binding), {p.module_path for p in pieces})
    config, tensors = method.from_peft(cfg, pieces)
    head = _head(whole, _root(binding), cfg)
    leave_out = sorted(layer.index for layer in binding.layers if layer.index not in seen_layers)
    if leave_out:
        config["leave_out"] = leave_out
    base = BaseFacts.of(binding, revision=cfg.get("revision") if _is_commit(cfg.get("revision")) else None)
    return AdapterPackage(method=method.name, config=config, tensors=_own_storage(tensors),
                          base=base, head=head, name=None, source=str(directory))


def _check_all_held(cfg: dict[str, Any], root: torch.nn.Module, held: set[str]) -> None:
    """Refuse when PEFT, loading this adapter onto ``root``, would adapt a Linear the file holds no tensors for and
    leave it at an initialisation that is not the identity (``init_lora_weights=False``: random outputs)."""
    if is_all_linear(cfg.get("target_modules")):
        return  # PEFT resolves it against the model (leaving out its output layer): derivation judges it
    match = PeftMatch.of(cfg, all_linear=False)
    for name, module in root.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        # held under another task prefix (saved from the bare backbone) is held: the tensors are placed by suffix
        if linear and match(name) and not any(name == h or name.endswith("." + h) or h.endswith("." + name)
                                              for h in held):
            raise init_refusal(cfg, f"target_modules={cfg.get('target_modules')!r} also matches {name} of "
                                    f"{type(root).__name__} (PEFT adapts every module it matches)")


def _own_storage(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor contiguous and in storage of its own: the slots of a fused projection share PEFT's one
    ``lora_A``, and safetensors refuses to write tensors that share memory (``adapterhub init`` on GPT-2)."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        value = value.contiguous()
        if value.untyped_storage().data_ptr() in seen:
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    return out


def _head(whole: dict[str, torch.Tensor], root: torch.nn.Module, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The ``modules_to_save`` tensors as the adapter's head; refused when they are not the model's head."""
    split = split_head(root, whole)
    if split.frozen:
        raise peft_unsupported("/modules_to_save", f"{split.frozen[:4]} were trained but belong to the frozen base "
                           f"model of {type(root).__name__} (or are tied to it, as an LM head tied to the input "
                           "embeddings is); adapterhub never changes base weights, so this adapter cannot be "
                           "represented (train with modules_to_save on untied head modules only)")
    if split.unknown:
        raise peft_unsupported("/modules_to_save", f"tensors {split.unknown[:4]} are neither LoRA/IA3 tensors nor "
                           f"parameters of {type(root).__name__}; load it onto the model class it was saved from "
                           f"(task_type {cfg.get('task_type')!r})")
    return split.head


def _is_commit(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def _root(binding: Binding) -> torch.nn.Module:
    model = getattr(binding, "root", None)
    return model if model is not None else binding.backbone


# --- export -----------------------------------------------------------------------------------------


def export_peft(handle: Any, name: str, directory: str | Path) -> Path:
    """Write adapter ``name`` of ``handle`` as a PEFT directory (any method with a ``peft_type``)."""
    entry = handle.entry(name)
    method = entry.method
    if method.peft_type is None:
        raise peft_unsupported("/peft_type", f"only {', '.join(m for m, c in REGISTRY.items() if c.peft_type)} "
                           f"export to PEFT, not {method.name!r}")
    model = handle.model
    module_names = {id(m): n for n, m in model.named_modules()}
    groups: dict[str, list] = {}
    for t in method.targets:
        groups.setdefault(module_names[id(t.module)], []).append(t)
    tensors, method_cfg = method.to_peft(entry.tree, {path: sorted(ts, key=lambda t: t.slot.part or 0)
                                                      for path, ts in groups.items()})
    out = {PREFIX + k: v for k, v in tensors.items()}
    peft_cfg: dict[str, Any] = {
        "peft_type": method.peft_type,
        "task_type": task_type(model), "base_model_name_or_path": getattr(model.config, "_name_or_path", None),
        "revision": None, "inference_mode": True, "target_modules": sorted(groups),
        "modules_to_save": None, **method_cfg,
    }
    head = handle.package(name).head
    if head:  # PEFT saves a module_to_save's tensors under the module's own names
        peft_cfg["modules_to_save"] = sorted({k.split(".", 1)[0] for k in head})
        out.update({PREFIX + k: v for k, v in head.items()})
    d = Path(directory)
    with staged_directory(d, owned=PEFT_FILES, last=(CONFIG_FILE,)) as stage:
        write_safetensors(out, stage / WEIGHTS_FILE)
        (stage / CONFIG_FILE).write_text(json.dumps(peft_cfg, indent=2, sort_keys=True), encoding="utf-8")
    return d


def task_type(model: torch.nn.Module) -> str | None:
    """PEFT's ``task_type`` for a transformers model class (None for a bare backbone)."""
    return next((task for suffixes, task in TASK_TYPES if type(model).__name__.endswith(suffixes)), None)
