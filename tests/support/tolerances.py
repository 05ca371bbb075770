"""One tolerance for comparing two computations of the same math (the suite's only floating-point yardstick).

Two code paths that compute the same function (ours vs a reference library, merged vs unmerged weights, a
fresh model instance vs the one in memory, sdpa vs eager) round differently: each summed product adds up to
one unit of the last place, so the difference grows with the *magnitude* of the values and with the
*number of summed terms* behind each output element. A fixed absolute 1e-5 ignores both: it is loose on
small outputs and fails on a deeper or wider path, or on another BLAS. Here the bound is

    atol = SAFETY * eps(dtype) * max|reference| * sqrt(terms)

(``sqrt``: rounding errors of independent sums add like a random walk). ``SAFETY`` = 16 is 4-5x the worst
ratio seen over the parity fixtures (fp32, transformers 4.57 and 5.x). In float64 the same formula is
~1e-13 relative: comparing two paths in float64 is how a test *proves* they are the same math, and an fp32
comparison only shows the fp32 path works.

Bit-equality (``torch.equal``) stays for results that are the same bytes by construction: the same
module on the same inputs twice, a tensor copied or restored, a state that must not change.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SAFETY = 16.0


def eps(*tensors_or_dtypes: torch.Tensor | torch.dtype) -> float:
    """Machine epsilon of the least precise floating dtype among the arguments (fp32 for non-float ones)."""
    worst = 0.0
    for t in tensors_or_dtypes:
        dtype = t.dtype if isinstance(t, torch.Tensor) else t
        worst = max(worst, torch.finfo(dtype if dtype.is_floating_point else torch.float32).eps)
    return worst or torch.finfo(torch.float32).eps


def model_terms(model_or_config: Any) -> int:
    """Summed products behind one output element of a transformer: per layer, the hidden-size and FFN
    contractions (T5 counts its encoder and decoder layers; a CLIP model its larger tower)."""
    c = getattr(model_or_config, "config", model_or_config)
    towers = [getattr(c, key) for key in ("text_config", "vision_config") if hasattr(c, key)]
    if towers and getattr(c, "hidden_size", None) is None:  # CLIP's two towers: the deeper sum counts
        return max(model_terms(t) for t in towers)

    def first(*names: str) -> int | None:
        for n in names:
            v = getattr(c, n, None)
            if isinstance(v, int):
                return v
        return None

    hidden = first("hidden_size", "d_model", "n_embd", "dim")
    if hidden is None:
        raise ValueError(f"model_terms: no hidden size on {type(c).__name__}")
    ffn = first("intermediate_size", "d_ff", "n_inner", "hidden_dim") or 4 * hidden
    layers = (first("num_hidden_layers", "num_layers", "n_layer", "n_layers") or 1) + (
        first("num_decoder_layers") or 0)
    return layers * (hidden + ffn)


def tolerance(reference: torch.Tensor, *, terms: int = 1, dtype: torch.dtype | None = None,
              scale: float | None = None) -> float:
    """The largest acceptable ``max|got - reference|`` for a result computed in ``dtype`` (default: the
    reference's) by another code path. ``scale`` overrides ``max|reference|`` where the magnitude that
    rounding acts on is known to be larger than the result (e.g. a difference of two large values)."""
    if scale is None:
        scale = magnitude(reference)
    return SAFETY * eps(dtype or reference) * scale * math.sqrt(max(terms, 1))


def magnitude(reference: torch.Tensor) -> float:
    """``max|reference|`` over its finite values (a masked logit of -inf carries no magnitude)."""
    finite = reference.detach()[torch.isfinite(reference.detach())]
    return finite.abs().max().item() if finite.numel() else 0.0


def max_diff(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """``max|got - want|`` over the positions where ``mask`` is true (all when None), computed in float64.
    Equal values count 0 (also equal infinities); a NaN on either side makes the result NaN."""
    g, w = got.detach().double(), want.detach().double()
    d = torch.where(g == w, torch.zeros_like(g), (g - w).abs())
    if mask is not None:
        d = d[mask.bool()]
    return d.max().item() if d.numel() else 0.0


def assert_close(got: torch.Tensor, want: torch.Tensor, *, terms: int = 1, mask: torch.Tensor | None = None,
                 scale: float | None = None, dtype: torch.dtype | None = None, what: str = "") -> float:
    """Assert ``got`` matches ``want`` within :func:`tolerance`; returns the difference.

    ``mask`` (bool, indexing the leading dims) selects the positions that count, e.g. non-padding tokens.
    ``dtype`` is the precision the computation was limited by (default: the less precise of the two).
    """
    assert got.shape == want.shape, f"{what}shape {tuple(got.shape)} != {tuple(want.shape)}"
    ref = want[mask.bool()] if mask is not None else want
    dtype = dtype or (got.dtype if eps(got) >= eps(want) else want.dtype)
    scale = magnitude(ref) if scale is None else scale
    tol = tolerance(ref, terms=terms, dtype=dtype, scale=scale)
    diff = max_diff(got, want, mask)  # NaN fails the comparison below
    assert diff <= tol, (f"{what}max abs diff {diff:.3e} > tolerance {tol:.3e} = {SAFETY:g} x eps({dtype}) "
                         f"x max|ref| {scale:.3g} x sqrt({terms} summed terms)")
    return diff
