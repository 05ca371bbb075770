"""Weight-space averaging of adapters (model soups): a NEW adapter, exact by construction.

``Average(a, b, ...)`` and ``WeightedSum(a, b, ..., coefficients=...)`` combine adapters that share
one base model and one method into a new :class:`SoupPackage` (an ``AdapterPackage`` that can be
attached, merged, saved and published). What "combined" means, per method (see ``docs/soups.md``):

* every weight-space method (LoRA, DoRA, IA3) is combined in the **merged-weight** sense: per
  projection, ``W_new = W + sum_i c_i (W_i - W)`` where ``W_i`` is the weight with ingredient ``i``
  merged (for an average, ``sum c_i = 1`` and this is ``sum_i c_i W_i``);
  - LoRA: ``Delta = sum_i c_i s_i B_i A_i``, stored exactly in concatenated-rank form (``A`` rows
    stacked, ``c_i s_i`` folded into ``B``'s columns, ``alpha = r`` so ``s = 1``), or truncated by SVD
    to ``rank`` with the relative Frobenius error reported;
  - DoRA: ``W_i = g_i (W + s_i B_i A_i)`` with the per-row factor ``g_i = m_i / ||W + s_i B_i A_i||``,
    which needs the base weights (``model=``); the result is again a DoRA adapter, exactly;
  - IA3: ``l = (1 - sum c_i) + sum_i c_i l_i`` (a diagonal scale is linear in ``l``);
* bottleneck and Compacter work in activation space; their soup is the parameter average
  ``theta = sum_i c_i theta_i`` (Wortsman et al.; the ``adapters`` library's ``average_adapter``
  with ``combine_strategy="linear"``), weights divided once.

Heads (``head.safetensors``) are combined with the same coefficients. Anything that would make the
result approximate or ambiguous (mixed methods, different configs or bases, bad weights) raises a
typed error naming what differs; nothing is modified.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CompositionError, IncompatibleBaseError, WeightMismatchError
from ..names import manifest_name
from ..runtime.config import check_config
from ..runtime.formats import read_adapter_dir, write_adapter_dir
from ..runtime.methods import REGISTRY, method_names
from ..runtime.methods.algebra import ingredient_label as _label
from ..runtime.methods.algebra import linear_combination
from ..runtime.package import AdapterPackage, BaseFacts

if TYPE_CHECKING:
    from ..runtime.handle import AdapterModel

Ingredient = AdapterPackage | str | Path

SUM_TOLERANCE = 1e-6
"""How far weights may sum from 1 for ``Average`` without ``normalize=True``."""


@dataclass
class SoupPackage(AdapterPackage):
    """An averaged adapter: a normal package plus the record of how it was made (manifest ``x-soup``)."""

    soup: dict[str, Any] = field(default_factory=dict)
    slot_errors: dict[str, float] = field(default_factory=dict)
    """Relative Frobenius error per projection after an SVD truncation (empty when exact)."""


# --- public entry points ----------------------------------------------------------------------------
def Average(*ingredients: Ingredient, weights: Sequence[float] | None = None, normalize: bool = False,  # noqa: N802
            rank: int | None = None, model: AdapterModel | None = None, name: str | None = None,
            head: bool = True) -> SoupPackage:
    """Weight-space average of adapters (a model soup) as a new adapter.

    ``weights`` default to uniform. They must be >= 0 and sum to 1 (within ``SUM_TOLERANCE``);
    ``normalize=True`` divides them by their sum instead. Negative or non-convex combinations are
    task arithmetic: use :func:`WeightedSum`. ``rank`` (LoRA/DoRA) truncates by SVD; ``model`` is
    needed for DoRA (its average depends on the base weights) and to read foreign-format directories.
    """
    pkgs = read_ingredients(ingredients, model)
    n = len(pkgs)
    if weights is None:
        coeffs = [1.0 / n] * n
    else:
        coeffs = _finite(weights, n, "weights")
        if any(w < 0 for w in coeffs):
            raise CompositionError(f"Average weights must be >= 0, got {coeffs}",
                                   hint="negative weights are task arithmetic: use WeightedSum(..., coefficients=...)")
        total = math.fsum(coeffs)
        if normalize:
            if total <= 0:
                raise CompositionError(f"Average weights sum to {total}; cannot normalise")
            coeffs = [w / total for w in coeffs]
        elif abs(total - 1.0) > SUM_TOLERANCE:
            raise CompositionError(
                f"Average weights sum to {total:.9g}, not 1",
                hint=f"pass normalize=True to use {[round(w / total, 6) for w in coeffs] if total > 0 else 'them'}, "
                     "or WeightedSum for an unnormalised combination")
    return _combine(pkgs, coeffs, "average", rank=rank, model=model, name=name, head=head)


def WeightedSum(*ingredients: Ingredient, coefficients: Sequence[float], rank: int | None = None,  # noqa: N802
                model: AdapterModel | None = None, name: str | None = None, head: bool = True) -> SoupPackage:
    """``W + sum_i c_i (W_i - W)`` for any finite coefficients (task arithmetic, emulating other tools).

    Bottleneck/Compacter: ``sum_i c_i theta_i``. Heads are combined only when the coefficients sum
    to 1 (otherwise pass ``head=False``): a head has no base to take differences from.
    """
    pkgs = read_ingredients(ingredients, model)
    coeffs = _finite(coefficients, len(pkgs), "coefficients")
    if head and any(p.head for p in pkgs) and abs(math.fsum(coeffs) - 1.0) > SUM_TOLERANCE:
        raise CompositionError("the ingredients have prediction heads, and coefficients that do not sum to 1 "
                               "have no meaning for a head", hint="pass head=False to leave the heads out")
    return _combine(pkgs, coeffs, "weighted-sum", rank=rank, model=model, name=name, head=head)


def save_soup(pkg: SoupPackage, directory: str | Path, *, name: str | None = None,
              metrics: Sequence[dict[str, Any]] | None = None, **fields: Any) -> Path:
    """Write an adapterhub directory whose manifest records the soup under ``x-soup``; returns its path.

    ``fields`` are ``write_adapter_dir``'s (version, description, license, authors, task); ``metrics``
    are manifest metric objects (``{"dataset", "split", "name", "value"}``).
    """
    published = name or manifest_name(pkg.name or "soup", short_prefix="soup")
    extra: dict[str, Any] = {"x-soup": pkg.soup, **({"metrics": [dict(m) for m in metrics]} if metrics else {})}
    return write_adapter_dir(pkg, directory, name=published, extra=extra, **fields)


def soup_record(pkg: AdapterPackage) -> dict[str, Any] | None:
    """The ``x-soup`` record of a soup (in memory or loaded from a directory), else ``None``."""
    if isinstance(pkg, SoupPackage):
        return pkg.soup
    return pkg.manifest.extensions.get("x-soup") if pkg.manifest is not None else None


def tensors_digest(pkg: AdapterPackage) -> str:
    """``sha256:`` over the adapter and head tensors (name, dtype, shape, bytes): an ingredient's identity."""
    digest = hashlib.sha256()
    for prefix, tensors in (("", pkg.tensors), ("head/", pkg.head)):
        for key in sorted(tensors):
            t = tensors[key].detach().cpu().contiguous()
            digest.update(f"{prefix}{key}|{str(t.dtype).removeprefix('torch.')}|"
                          f"{','.join(map(str, t.shape))}\n".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


# --- validation -------------------------------------------------------------------------------------
def read_ingredients(ingredients: Sequence[Ingredient], model: AdapterModel | None) -> list[AdapterPackage]:
    """The ingredients as packages (directories read for ``model``'s architecture), checked compatible."""
    if not ingredients:
        raise CompositionError("nothing to average", hint="pass at least one adapter package or directory")
    binding = model.binding if model is not None else None
    pkgs = [i if isinstance(i, AdapterPackage) else read_adapter_dir(i, binding) for i in ingredients]
    _check_compatible(pkgs)
    return pkgs


def _finite(values: Sequence[float], n: int, what: str) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != n:
        raise CompositionError(f"{len(out)} {what} for {n} ingredients")
    if not all(math.isfinite(v) for v in out):
        raise CompositionError(f"{what} must be finite, got {out}")
    return out


def _effective(pkg: AdapterPackage) -> dict[str, Any]:
    """The config that decides what the adapter computes (its method's ``training_only`` keys left out)."""
    cfg = check_config(pkg.method, pkg.config, tuple(REGISTRY)).effective()
    drop = REGISTRY[pkg.method].training_only
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k not in drop}


def _check_compatible(pkgs: list[AdapterPackage]) -> None:
    first = pkgs[0]
    methods = {p.method for p in pkgs}
    if len(methods) > 1:
        raise CompositionError("cannot average different methods: " + ", ".join(
            f"{_label(p, i)}={p.method}" for i, p in enumerate(pkgs)), hint="average adapters of one method only")
    for i, p in enumerate(pkgs[1:], 1):
        for fact in ("model_type", "hidden_size", "num_hidden_layers", "num_decoder_layers"):
            if getattr(p.base, fact) != getattr(first.base, fact):
                raise IncompatibleBaseError(
                    f"ingredients {_label(first, 0)} and {_label(p, i)} were made for different bases: "
                    f"{fact} {getattr(first.base, fact)} vs {getattr(p.base, fact)}")
        if p.base.fingerprint and first.base.fingerprint and p.base.fingerprint != first.base.fingerprint:
            raise IncompatibleBaseError(
                f"ingredients {_label(first, 0)} and {_label(p, i)} were made for different base weights "
                f"(fingerprints {first.base.fingerprint} vs {p.base.fingerprint})",
                hint="a soup only makes sense on one frozen base")
    configs = [_effective(p) for p in pkgs]
    for i, cfg in enumerate(configs[1:], 1):
        diff = sorted(k for k in set(cfg) | set(configs[0]) if cfg.get(k) != configs[0].get(k))
        if diff:
            shown = "; ".join(f"{k}: {configs[0].get(k)!r} vs {cfg.get(k)!r}" for k in diff)
            raise CompositionError(f"ingredients {_label(first, 0)} and {_label(pkgs[i], i)} have different "
                                   f"{first.method} configs ({shown})",
                                   hint="only adapters with the same structure can be averaged exactly")
    if REGISTRY[first.method].combine_same_shapes:  # LoRA ranks may differ; the rest must match tensor for tensor
        _check_same_tensors([p.tensors for p in pkgs], pkgs, "adapter")
    if any(p.head for p in pkgs):
        if not all(p.head for p in pkgs):
            raise WeightMismatchError("some ingredients have a prediction head and others do not: " + ", ".join(
                f"{_label(p, i)}={'head' if p.head else 'none'}" for i, p in enumerate(pkgs)))
        _check_same_tensors([p.head for p in pkgs], pkgs, "head")
        kinds = {(p.head_type, p.num_labels) for p in pkgs}
        if len(kinds) > 1:
            raise WeightMismatchError(f"ingredients have different heads (type, num_labels): {sorted(kinds, key=str)}")


def _check_same_tensors(trees: list[dict[str, torch.Tensor]], pkgs: list[AdapterPackage], what: str) -> None:
    ref = {k: tuple(v.shape) for k, v in trees[0].items()}
    for i, tree in enumerate(trees[1:], 1):
        got = {k: tuple(v.shape) for k, v in tree.items()}
        if got != ref:
            diff = sorted(set(got) ^ set(ref)) or sorted(k for k in ref if ref[k] != got[k])
            raise WeightMismatchError(f"{what} tensors of {_label(pkgs[0], 0)} and {_label(pkgs[i], i)} differ: "
                                      f"{diff[:5]}")


# --- combination ------------------------------------------------------------------------------------
def _combine(pkgs: list[AdapterPackage], coeffs: list[float], kind: str, *, rank: int | None,
             model: AdapterModel | None, name: str | None, head: bool) -> SoupPackage:
    first = pkgs[0]
    method = first.method
    if rank is not None and (not REGISTRY[method].combine_truncates or not isinstance(rank, int) or rank < 1):
        raise CompositionError(f"rank={rank!r}: an SVD truncation rank is a positive integer and applies to "
                               f"{'/'.join(method_names(combine_truncates=True))} only (this is {method})")
    dtype = _common_dtype([t for p in pkgs for t in p.tensors.values()])
    record: dict[str, Any] = {
        "kind": kind, "method": method, "coefficients": coeffs,
        "ingredients": [{"name": p.name, **({"version": p.manifest.version} if p.manifest else {}),
                         "digest": tensors_digest(p), "coefficient": c} for p, c in zip(pkgs, coeffs, strict=True)],
    }
    impl = REGISTRY[method]
    if impl.combine_reads_base:
        if model is None:
            raise CompositionError(f"averaging {method} adapters needs the base model (model=AdapterModel)",
                                   hint=impl.combine_reads_base)
        model.check_base(first.base, _label(first, 0))
    combined = impl.combine(pkgs, coeffs, rank=rank, binding=model.binding if model is not None else None)
    record.update(combined.record)
    tensors = combined.tensors
    head_tensors: dict[str, torch.Tensor] = {}
    if head and first.head:
        head_dtype = _common_dtype([t for p in pkgs for t in p.head.values()])
        head_tensors = {k: linear_combination([p.head[k] for p in pkgs], coeffs).to(head_dtype) for k in first.head}
    tensors = {k: v.to(dtype).contiguous() for k, v in tensors.items()}
    return SoupPackage(
        method=method, config=combined.config, tensors=tensors, base=_base(pkgs), head=head_tensors,
        head_type=first.head_type if head_tensors else None, num_labels=first.num_labels if head_tensors else None,
        name=name or "soup", source=f"<{kind} of {len(pkgs)}>", soup=record, slot_errors=combined.slot_errors)


def _common_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    dtypes = {t.dtype for t in tensors}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def _base(pkgs: list[AdapterPackage]) -> BaseFacts:
    """The shared base facts, with the fingerprint/id/revision any ingredient recorded."""
    fp = next((p.base.fingerprint for p in pkgs if p.base.fingerprint), None)
    ident = next((p.base.id for p in pkgs if p.base.id), None)
    rev = next((p.base.revision for p in pkgs if p.base.revision), None)
    return replace(pkgs[0].base, fingerprint=fp, id=ident, revision=rev)


