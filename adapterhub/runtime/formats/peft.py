"""PEFT adapter directories: read LoRA/DoRA/IA3 into our format, and export ours back.

PEFT stores ``base_model.model.<module path>.lora_A.weight`` (``[r, in]``), ``lora_B.weight``
(``[out, r]``), ``lora_magnitude_vector`` (DoRA, ``[out]``) and ``ia3_l`` (``[out, 1]``, or
``[1, in]`` for feed-forward modules). A LoRA on GPT-2's fused ``c_attn`` becomes our q/k/v slots
sharing one ``A`` (exact: the q, k and v rows of ``B A`` are the rows of each slot). Export writes
one PEFT module per projection (q/k/v slots of a fused projection are stacked back: ``A`` rows
concatenated, ``B`` block-diagonal, so a q+v LoRA of rank r exports with rank 2r on ``c_attn``
via ``rank_pattern``). Modules saved whole (``modules_to_save``) become the adapter's head.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ...errors import SchemaError, SchemaProblem
from ...fileio import staged_directory
from ..arch import Binding
from ..heads import split_head
from ..package import AdapterPackage, BaseFacts
from ..safetensors_io import write_safetensors
from .keys import match_suffix, slot_index
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
LEAVES = ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector", "ia3_l", "lora_B.bias")


def _unsupported(pointer: str, message: str) -> SchemaError:
    return SchemaError("adapter_config.json (PEFT)", [SchemaProblem(pointer, message)])


def read_peft_dir(directory: Path, cfg: dict[str, Any], binding: Binding | None = None) -> AdapterPackage:
    if binding is None:
        raise _unsupported("/", "reading a PEFT directory needs the target model (use AdapterModel.load)")
    peft_type = cfg.get("peft_type")
    if peft_type == "LORA":
        method = "dora" if cfg.get("use_dora") else "lora"
        for key in ("rank_pattern", "alpha_pattern"):
            if cfg.get(key):
                raise _unsupported(f"/{key}", f"per-module {key} is not supported")
        if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
            raise _unsupported("/bias", "LoRA with trained biases is not supported")
    elif peft_type == "IA3":
        method = "ia3"
    else:
        raise _unsupported("/peft_type", f"{peft_type!r} is not supported (lora, dora and ia3 are)")
    slots = slot_index(binding)
    tensors: dict[str, torch.Tensor] = {}
    whole: dict[str, torch.Tensor] = {}  # modules_to_save (and anything else saved whole)
    targets: dict[str, None] = {}
    feedforward: dict[str, None] = {}
    seen_layers: set[int] = set()
    ff_suffixes = cfg.get("feedforward_modules") or []
    if isinstance(ff_suffixes, str):
        raise _unsupported("/feedforward_modules", "regular-expression feedforward_modules are not supported")
    for key, value in load_weights(directory, "adapter_model", "adapter_model.bin").items():
        path = key.removeprefix(PREFIX)
        leaf = next((lf for lf in LEAVES if path.endswith("." + lf)), None)
        if leaf is None:
            whole[path.replace(".modules_to_save.default", "").replace(".original_module", "")] = value
            continue
        module_path = path[: -len(leaf) - 1]
        hit = match_suffix(module_path, slots)
        if hit is None or hit[1]:
            raise _unsupported("/target_modules", f"{module_path!r} is not a projection adapterhub can target")
        ref = slots[hit[0]]
        seen_layers.add(ref.layer.index)
        n = len(ref.slots)
        for j, slot in enumerate(ref.slots):
            neutral = slot.key.removeprefix("cross_")
            targets[neutral] = None
            prefix = f"layers.{ref.layer.index}.{slot.key}"
            if leaf == "lora_A.weight":
                tensors[f"{prefix}.lora_A"] = value
            elif leaf == "lora_B.weight":
                tensors[f"{prefix}.lora_B"] = value[j * value.shape[0] // n:(j + 1) * value.shape[0] // n]
            elif leaf == "lora_magnitude_vector":
                tensors[f"{prefix}.magnitude"] = value[j * value.shape[0] // n:(j + 1) * value.shape[0] // n]
            elif leaf == "ia3_l":
                is_ff = any(module_path.endswith(s) for s in ff_suffixes)
                if is_ff:
                    feedforward[neutral] = None
                    tensors[f"{prefix}.ia3_l"] = value.reshape(-1)
                else:
                    flat = value.reshape(-1)
                    tensors[f"{prefix}.ia3_l"] = flat[j * flat.shape[0] // n:(j + 1) * flat.shape[0] // n]
            else:
                raise _unsupported("/lora_bias", "LoRA with trained biases is not supported")
    config: dict[str, Any]
    if method == "ia3":
        config = {"target_modules": list(targets), "feedforward_modules": list(feedforward)}
    else:
        config = {"r": int(cfg["r"]), "alpha": float(cfg.get("lora_alpha", 8)), "target_modules": list(targets)}
        if cfg.get("use_rslora"):
            config["use_rslora"] = True
        if cfg.get("lora_dropout"):
            config["dropout"] = float(cfg["lora_dropout"])
    head = _head(whole, _root(binding), cfg)
    leave_out = sorted(layer.index for layer in binding.layers if layer.index not in seen_layers)
    if leave_out:
        config["leave_out"] = leave_out
    base = BaseFacts.of(binding, revision=cfg.get("revision") if _is_commit(cfg.get("revision")) else None)
    return AdapterPackage(method=method, config=config, tensors={k: v.contiguous() for k, v in tensors.items()},
                          base=base, head=head, name=None, source=str(directory))


def _head(whole: dict[str, torch.Tensor], root: torch.nn.Module, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The ``modules_to_save`` tensors as the adapter's head; refused when they are not the model's head."""
    split = split_head(root, whole)
    if split.frozen:
        raise _unsupported("/modules_to_save", f"{split.frozen[:4]} were trained but belong to the frozen base "
                           f"model of {type(root).__name__} (or are tied to it, as an LM head tied to the input "
                           "embeddings is); adapterhub never changes base weights, so this adapter cannot be "
                           "represented (train with modules_to_save on untied head modules only)")
    if split.unknown:
        raise _unsupported("/modules_to_save", f"tensors {split.unknown[:4]} are neither LoRA/IA3 tensors nor "
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
    """Write adapter ``name`` of ``handle`` as a PEFT directory (LoRA, DoRA or IA3)."""
    entry = handle.entry(name)
    method = entry.method
    if method.name not in ("lora", "dora", "ia3"):
        raise _unsupported("/peft_type", f"only lora, dora and ia3 export to PEFT, not {method.name!r}")
    model = handle.model
    module_names = {id(m): n for n, m in model.named_modules()}
    tree = entry.tree
    groups: dict[str, list] = {}
    for t in method.targets:
        groups.setdefault(module_names[id(t.module)], []).append(t)
    out: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    cfg = method.config
    ff_paths: list[str] = []
    for path, targets in groups.items():
        key = PREFIX + path
        targets = sorted(targets, key=lambda t: t.slot.part or 0)
        parts = targets[0].slot.parts
        if method.name == "ia3":
            scaled_in = targets[0].prefix in method.input_scaled
            if scaled_in:
                ff_paths.append(path)
                out[f"{key}.ia3_l"] = tree.get(f"{targets[0].prefix}.ia3_l").detach().reshape(1, -1)
            else:
                by_part = {t.slot.part or 0: tree.get(f"{t.prefix}.ia3_l").detach() for t in targets}
                width = targets[0].fout
                vec = torch.cat([by_part.get(i, torch.ones(width)) for i in range(parts)])
                out[f"{key}.ia3_l"] = vec.reshape(-1, 1)
            continue
        r = int(cfg["r"])
        a_list = [tree.get(f"{t.prefix}.lora_A").detach() for t in targets]
        if parts == 1:
            out[f"{key}.lora_A.weight"] = a_list[0]
            out[f"{key}.lora_B.weight"] = tree.get(f"{targets[0].prefix}.lora_B").detach()
            if method.name == "dora":
                out[f"{key}.lora_magnitude_vector"] = tree.get(f"{targets[0].prefix}.magnitude").detach()
            continue
        if method.name == "dora":
            raise _unsupported("/use_dora", "DoRA on a fused projection cannot be exported to PEFT")
        width = targets[0].fout
        big_r = r * len(targets)
        b = torch.zeros(width * parts, big_r, dtype=a_list[0].dtype)
        for j, t in enumerate(targets):
            b[t.rows, j * r:(j + 1) * r] = tree.get(f"{t.prefix}.lora_B").detach()
        out[f"{key}.lora_A.weight"] = torch.cat(a_list, dim=0)
        out[f"{key}.lora_B.weight"] = b
        ranks[path] = big_r
        scaling = method.scaling
        alphas[path] = scaling * (math.sqrt(big_r) if cfg.get("use_rslora") else big_r)
    target_paths = sorted(groups)
    peft_cfg: dict[str, Any] = {
        "peft_type": "IA3" if method.name == "ia3" else "LORA",
        "task_type": task_type(model), "base_model_name_or_path": getattr(model.config, "_name_or_path", None),
        "revision": None, "inference_mode": True, "target_modules": target_paths,
        "fan_in_fan_out": handle.binding.conv1d, "modules_to_save": None,
    }
    if method.name == "ia3":
        peft_cfg["feedforward_modules"] = ff_paths
        peft_cfg["init_ia3_weights"] = True
    else:
        peft_cfg.update({"r": int(cfg["r"]), "lora_alpha": float(cfg["alpha"]), "lora_dropout": float(cfg.get("dropout") or 0.0),
                         "use_rslora": bool(cfg.get("use_rslora")), "use_dora": method.name == "dora",
                         "bias": "none", "rank_pattern": ranks, "alpha_pattern": alphas, "init_lora_weights": True})
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
