"""The suite's tolerance (``tests/support/tolerances.py``): accepts rounding, refuses a real difference."""

from __future__ import annotations

import pytest
import torch
from support.runtime_helpers import tiny_config
from support.tolerances import assert_close, model_terms, tolerance


def _two_orders(dtype: torch.dtype, n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x @ a) @ b`` and ``x @ (a @ b)``: the same math, summed in another order."""
    g = torch.Generator().manual_seed(0)
    x, a, b = (torch.randn(8, n, generator=g), torch.randn(n, n, generator=g) / n ** 0.5,
               torch.randn(n, n, generator=g) / n ** 0.5)
    x, a, b = x.to(dtype), a.to(dtype), b.to(dtype)
    return (x @ a) @ b, x @ (a @ b)


def test_rounding_of_two_summation_orders_is_accepted_in_fp32_and_tiny_in_float64():
    left, right = _two_orders(torch.float32)
    assert (left - right).abs().max() > 0  # the two orders really round differently
    assert_close(left, right, terms=2 * 512)
    left64, right64 = _two_orders(torch.float64)
    diff = assert_close(left64, right64, terms=2 * 512)
    assert diff <= 1e-12 * right64.abs().max()


def test_a_real_difference_of_one_part_in_a_million_fails_in_float64():
    left, right = _two_orders(torch.float64)
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_close(left * (1 + 1e-6), right, terms=2 * 512)


def test_tolerance_scales_with_magnitude_and_terms_and_mask_selects_positions():
    ref = torch.tensor([[1.0, -4.0], [1000.0, 2.0]])
    assert tolerance(ref * 10) == pytest.approx(10 * tolerance(ref))
    assert tolerance(ref, terms=400) == pytest.approx(20 * tolerance(ref))
    assert tolerance(ref, dtype=torch.float64) < 1e-8 * tolerance(ref)  # eps 2.2e-16 vs 1.2e-7
    mask = torch.tensor([True, False])
    got = ref.clone()
    got[1] += 1.0  # only the masked-out row differs
    assert_close(got, ref, mask=mask)
    with pytest.raises(AssertionError):
        assert_close(got, ref)


def test_model_terms_counts_every_layer_contraction():
    assert model_terms(tiny_config("bert")) == 2 * (32 + 37)
    assert model_terms(tiny_config("gpt2")) == 2 * (32 + 37)
    assert model_terms(tiny_config("t5")) == (2 + 2) * (32 + 37)
    assert model_terms(tiny_config("gpt2", n_inner=None)) == 2 * (32 + 4 * 32)


def test_equal_infinities_count_as_equal_and_nan_always_fails():
    want = torch.tensor([1.0, -float("inf"), 2.0])
    assert_close(want.clone(), want)
    with pytest.raises(AssertionError):
        assert_close(torch.tensor([1.0, 0.0, 2.0]), want)
    with pytest.raises(AssertionError):
        assert_close(torch.tensor([1.0, -float("inf"), float("nan")]), want)
