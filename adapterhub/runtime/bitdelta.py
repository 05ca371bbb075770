"""Making BitDelta adapters: compress a full fine-tune against its base, then (optionally) distil the scales.

``compress(base, finetuned, target_modules=[...])`` returns an :class:`AdapterPackage` of method
``bitdelta`` that ``write_adapter_dir`` saves and ``AdapterModel.load_package`` attaches. Only the
targeted projection weights are captured: biases, norms, embeddings and heads of the fine-tune are
not (as in the paper, which keeps those at full precision outside the 1-bit delta).
``distill_scales`` then fits the per-matrix scales so the compressed model's outputs match the
fine-tune's (the paper's scale distillation, with every other parameter frozen).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AdapterStateError, IncompatibleBaseError, InvalidArgumentError
from ..names import is_repo_id
from .arch import bind
from .config import check_config, stated_json
from .fingerprint import base_fingerprint
from .handle import AdapterModel
from .methods.bitdelta import BitDelta, pack_signs, unpack_signs
from .methods.projection import weight_rows
from .package import AdapterPackage, BaseFacts

__all__ = ["compress", "distill_scales", "pack_signs", "unpack_signs"]


def compress(base_model: nn.Module, finetuned_model: nn.Module, *, target_modules: Iterable[str],
             leave_out: Iterable[int] | None = None) -> AdapterPackage:
    """The BitDelta package of ``finetuned_model`` relative to ``base_model`` (neither model is modified).

    Per target: ``mask = pack(W_ft - W_base >= 0)``, ``scale = mean|W_ft - W_base|`` (fp32, computed in fp32).
    """
    config: dict[str, Any] = {"target_modules": list(target_modules)}
    if leave_out is not None:
        config["leave_out"] = list(leave_out)
    typed = check_config("bitdelta", config, ("bitdelta",))
    base_binding, ft_binding = bind(base_model), bind(finetuned_model)
    mine, theirs = BaseFacts.of(base_binding), BaseFacts.of(ft_binding)
    if mine.shape_differs(theirs):
        raise IncompatibleBaseError(f"the fine-tune is {theirs.describe()}, the base {mine.describe()}",
                                    hint="compress a fine-tune against the base it was trained from")
    base_targets = BitDelta(typed.effective(), base_binding).targets
    ft_targets = {t.prefix: t for t in BitDelta(typed.effective(), ft_binding).targets}
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for t in base_targets:
            w_base = weight_rows(base_binding, t).float().cpu()
            w_ft = weight_rows(ft_binding, ft_targets[t.prefix]).float().cpu()
            if w_base.shape != w_ft.shape:
                raise IncompatibleBaseError(f"{t.prefix}: fine-tune weight is {tuple(w_ft.shape)}, "
                                            f"base {tuple(w_base.shape)}")
            delta = w_ft - w_base
            tensors[f"{t.prefix}.mask"] = pack_signs(delta)
            tensors[f"{t.prefix}.scale"] = delta.abs().mean()
    name = getattr(getattr(base_model, "config", None), "_name_or_path", "") or ""
    facts = BaseFacts.of(base_binding, base_fingerprint(base_model), name if is_repo_id(name) else None)
    return AdapterPackage(method="bitdelta", config=stated_json(typed), tensors=tensors, base=facts)


def _outputs(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Logits when the model has a head, else the last hidden state (what distillation matches)."""
    out = model(**batch)
    logits = getattr(out, "logits", None)
    return logits if logits is not None else out.last_hidden_state


def distill_scales(ah: AdapterModel, name: str, finetuned_model: nn.Module,
                   batches: Iterable[Mapping[str, torch.Tensor]], *, steps: int = 50, lr: float = 1e-4) -> list[float]:
    """Fit the scales of BitDelta adapter ``name`` so ``ah.model`` matches ``finetuned_model``; returns the losses.

    Minimises ``mse(finetuned(x), compressed(x))`` over logits (hidden states for bare backbones) with
    AdamW on the scales alone, cycling through ``batches`` for ``steps`` steps; masks, base and heads stay
    frozen. Afterwards the adapter's config says ``scale_distilled: true``; requires_grad flags and train/eval
    modes of both models are restored. Loss ``i`` is measured before update ``i``.
    """
    entry = ah.entry(name)
    if entry.method.name != "bitdelta":
        raise AdapterStateError(f"adapter {name!r} is a {entry.method.name} adapter, not bitdelta",
                                hint="distill_scales fits the scales of a BitDelta adapter (made by compress)")
    if entry.merged:
        raise AdapterStateError(f"adapter {name!r} is merged", hint="unmerge it before distilling its scales")
    batches = list(batches)
    if not batches or steps < 1:
        raise InvalidArgumentError(f"distill_scales got {len(batches)} batch(es) and steps={steps}",
                                   hint="pass at least one batch and steps >= 1")
    scales = [p for n, p in entry.tree.named_parameters() if n.endswith(".scale")]
    flags = {p: p.requires_grad for p in ah.model.parameters()}
    modes = (ah.model.training, finetuned_model.training)
    previous = ah.active
    with torch.no_grad():
        ah.model.eval()
        finetuned_model.eval()
        targets = [_outputs(finetuned_model, b).detach() for b in batches]
    try:
        for p in ah.model.parameters():
            p.requires_grad_(False)
        for p in scales:
            p.requires_grad_(True)
        ah.activate(name)
        opt = torch.optim.AdamW(scales, lr=lr)
        losses = []
        for step in range(steps):
            i = step % len(batches)
            loss = F.mse_loss(_outputs(ah.model, batches[i]).float(), targets[i].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        for p in scales:
            p.grad = None
        for p, flag in flags.items():
            p.requires_grad_(flag)
        ah.model.train(modes[0])
        finetuned_model.train(modes[1])
        ah.activate(*previous)
    entry.config = dataclasses.replace(entry.config, scale_distilled=True)
    entry.method.config["scale_distilled"] = True
    return losses
