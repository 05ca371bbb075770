"""Differentiable soft top-k: the entropy-regularised selection CoDA's router uses.

For scores ``s`` (one per token), a budget ``k`` and a temperature ``epsilon`` the weights solve

    max_lambda  sum_i s_i lambda_i + epsilon * H(lambda)   s.t.  sum_i lambda_i = k,  0 <= lambda_i <= 1

with ``H(lambda) = -sum_i lambda_i log lambda_i``. At the optimum ``lambda_i = min(1, exp((s_i + a) / eps))``
for the one ``a`` that makes the weights sum to ``k``. We reach it by dual ascent with epsilon-scaling
(start at 4.0, multiply by 0.7 per iteration, never below ``epsilon``), alternating two exact steps:

* ``a`` (the sum multiplier) given the set ``S`` of tokens clamped at 1 (box multiplier ``b_i < 0``):
  ``a = eps * (log(k - |S|) - logsumexp_{i not in S}(s_i / eps))``, so the weights sum to ``k``;
* ``b`` given ``a``: ``b_i = min(0, -s_i - a)``; tokens with ``b_i < 0`` join ``S`` (it only grows).

Public re-implementations alternate ``a = eps * (log k - logsumexp((s + b) / eps))`` with the same
``b`` step instead. That has the same fixed point but converges geometrically at a rate near ``|S| / k``:
after 20 iterations its weights can sum to ``k - 1`` or less. Holding ``S`` at 1 makes the ``a`` step an
active-set step (as in Michelot's simplex projection) that never overshoots (``S`` stays inside the optimum's
clamped set) and ends exactly, typically within a few iterations at the final ``epsilon``. Everything
runs in fp32 with autocast off; gradients flow through the unrolled iterations to the scores.
"""

from __future__ import annotations

import math

import torch

from ..errors import InvalidArgumentError

EPSILON_INIT = 4.0
EPSILON_DECAY = 0.7


def soft_top_k(scores: torch.Tensor, k: torch.Tensor, *, epsilon: float, iterations: int,
               valid: torch.Tensor | None = None, epsilon_init: float = EPSILON_INIT,
               decay: float = EPSILON_DECAY) -> torch.Tensor:
    """Weights ``[batch, n]`` in [0, 1] summing to ``k[b]`` over the valid tokens of each row (fp32).

    ``scores``: ``[batch, n]``; ``k``: ``[batch]`` budgets (0 <= k <= valid count); ``valid``: bool
    ``[batch, n]`` (False = padding: weight exactly 0, never selected). A row whose budget covers all
    its valid tokens gets exactly 1 on each of them (the only feasible point, so no iterations).
    """
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.float()
        if valid is None:
            valid = torch.ones_like(s, dtype=torch.bool)
        if iterations < 1:
            raise InvalidArgumentError(f"soft_top_k got iterations={iterations}", hint="pass iterations >= 1")
        n_valid = valid.sum(-1)
        empty = (n_valid == 0).unsqueeze(-1)  # all padding: computed as if valid, then zeroed (no inf - inf)
        s = s.masked_fill(~valid & ~empty, -math.inf)
        kf = k.to(s.dtype).clamp(min=0)
        saturated = torch.zeros_like(s, dtype=torch.bool)
        free = kf.unsqueeze(-1)
        for t in range(iterations):
            eps = max(epsilon_init * decay**t, epsilon)
            # a-step: the weights sum to k with the clamped tokens held at exactly 1
            held = saturated.sum(-1, keepdim=True)
            unclamped = s.masked_fill(saturated, -math.inf)
            # A row with no token left to weigh (every valid one clamped, or k covers them all) has no
            # finite logsumexp; feed it zeros so neither the value nor its gradient becomes NaN (the row's
            # weights are fixed by the clamped set, and by ``full`` below).
            nothing_free = torch.isinf(unclamped).all(-1, keepdim=True)
            unclamped = torch.where(nothing_free, torch.zeros_like(unclamped), unclamped)
            lse = torch.logsumexp(unclamped / eps, dim=-1, keepdim=True)
            a = eps * (torch.log((free - held).clamp(min=1e-30)) - lse)
            # min(1, exp(x)) as exp(min(x, 0)): exp never overflows, so no inf * 0 = NaN in the backward pass
            weights = torch.where(saturated, torch.ones_like(s), torch.exp(((s + a) / eps).clamp(max=0.0)))
            # b-step: every token whose weight would exceed 1 is clamped from now on (the set only grows)
            saturated = saturated | ((s + a) > 0).detach()
        full = (kf >= n_valid.to(s.dtype)).unsqueeze(-1)
        weights = torch.where(full, valid.to(s.dtype), weights)
        return torch.where((kf > 0).unsqueeze(-1) & ~empty, weights, torch.zeros_like(weights))


def budgets(k: float, valid: torch.Tensor) -> torch.Tensor:
    """Tokens routed per row: ``min(k, valid)`` for a count (``k >= 1``), ``ceil(k * valid)`` for a fraction."""
    n_valid = valid.sum(-1)
    if k >= 1:
        return n_valid.clamp(max=int(k))
    # the 1e-6 keeps ceil(0.3 * 10) at 3 despite 0.3 * 10 = 3.0000000000000004
    routed = torch.ceil(n_valid.to(torch.float64) * k - 1e-6).to(n_valid.dtype)
    return torch.minimum(routed.clamp(min=1), n_valid)
