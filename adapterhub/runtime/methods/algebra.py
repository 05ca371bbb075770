"""Weight-space algebra the methods' ``combine`` share: exact linear combinations and rank truncation.

Everything is computed in float64 (the caller casts back), so the order of ingredients does not
matter and an average is exact up to that final cast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..package import AdapterPackage


def linear_combination(tensors: Sequence[torch.Tensor], coeffs: Sequence[float]) -> torch.Tensor:
    """``sum c_i t_i`` in float64 (then cast by the caller), so the order of ingredients does not matter."""
    out = torch.zeros(tensors[0].shape, dtype=torch.float64)
    for t, c in zip(tensors, coeffs, strict=True):
        out += c * t.detach().to(torch.float64)
    return out


def truncate(b: torch.Tensor, a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Best rank-``k`` factors of ``b @ a`` (QR + SVD of the small core); returns (B, A, tail^2, total^2).

    ``sqrt(S)`` goes on both sides so the factors stay balanced for further training. When ``k``
    exceeds the product's rank the factors are zero-padded (still exact).
    """
    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.t())
    u, s, vh = torch.linalg.svd(rb @ ra.t(), full_matrices=False)
    keep = min(k, s.numel())
    root = s[:keep].sqrt()
    new_b = torch.zeros(b.shape[0], k, dtype=b.dtype)
    new_a = torch.zeros(k, a.shape[1], dtype=a.dtype)
    new_b[:, :keep] = (qb @ u[:, :keep]) * root
    new_a[:keep] = root.view(-1, 1) * (vh[:keep] @ qa.t())
    return new_b, new_a, float((s[keep:] ** 2).sum()), float((s ** 2).sum())


def ingredient_label(pkg: AdapterPackage, i: int) -> str:
    """How messages name ingredient ``i``: ``#1 (name)``."""
    return f"#{i} ({pkg.name})" if pkg.name else f"#{i}"
