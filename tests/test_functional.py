"""llmint8.functional on the CPU backend against the float64 reference."""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import llmint8
from llmint8 import functional as F

from .helpers import (
    FP32_EPS,
    STEP,
    assert_within_bound,
    int8_linear_bound,
    planted_outliers,
    reference_linear,
    reference_outlier_mask,
    reference_row_absmax,
)

dims = st.integers(min_value=1, max_value=96)
float_dtypes = st.sampled_from([torch.float16, torch.bfloat16, torch.float32])
thresholds = st.sampled_from([0.0, 1.5, 3.0, 6.0])


def _draw_matrix(seed, rows, cols, dtype, outliers=0):
    generator = torch.Generator().manual_seed(seed)
    x, _ = planted_outliers(rows, cols, min(outliers, cols), generator)
    return x.to(dtype)


@given(
    seed=st.integers(0, 2**32 - 1), rows=dims, cols=dims, dtype=float_dtypes, threshold=thresholds
)
@example(seed=1917, rows=13, cols=94, dtype=torch.float32, threshold=6.0)  # a tie made by rounding
def test_quantization_error_is_at_most_half_a_step(seed, rows, cols, dtype, threshold):
    x = _draw_matrix(seed, rows, cols, dtype, outliers=2)
    q = F.quantize_rowwise(x, threshold)
    absmax = reference_row_absmax(x, threshold)
    assert torch.equal(q.row_absmax.double(), absmax)
    assert q.values.dtype == torch.int8 and q.values.abs().max() <= 127
    inliers = ~reference_outlier_mask(x, threshold)
    restored = F.dequantize_rowwise(q.values, q.row_absmax, torch.float64)
    err = (restored - x.double())[:, inliers].abs()
    # Half a step, plus the float32 product x * (127 / absmax) that the code is rounded from: two
    # roundings (the inverse, the product) move it by up to 2**-23 of itself each, enough to
    # turn 117.4999935 into 117.5 and so 118 (seed 1917, 13 x 94, float32, threshold 6).
    bound = (absmax / STEP)[:, None] * (1 + 1e-6) + x.double()[:, inliers].abs() * 2**-22
    assert (err <= bound).all()


@given(seed=st.integers(0, 2**32 - 1), rows=dims, cols=dims, threshold=st.sampled_from([1.0, 6.0]))
def test_outlier_columns_are_found_and_zeroed(seed, rows, cols, threshold):
    x = _draw_matrix(seed, rows, cols, torch.float16, outliers=3)
    q = F.quantize_rowwise(x, threshold)
    expected = reference_outlier_mask(x, threshold).nonzero().flatten()
    assert torch.equal(q.outlier_cols, expected)
    assert (q.values[:, expected] == 0).all()


def test_outlier_columns_are_multiplied_in_floating_point(rng):
    # Only outlier columns are non-zero: the result is exactly x[:, C] @ dequant(W)[:, C].T.
    x = torch.zeros(7, 40)
    x[:, [3, 17]] = torch.randn(7, 2, generator=rng) * 10 + 30
    weight = torch.randn(12, 40, generator=rng)
    CB, SCB = F.quantize_weight(weight)
    y = F.int8_linear(x, CB, SCB, threshold=6.0)
    dequantized = F.dequantize_rowwise(CB, SCB, torch.float64)
    columns = x.double()[:, [3, 17]], dequantized[:, [3, 17]]
    expected = columns[0] @ columns[1].t()
    # Only fp32 rounding remains: a few ulps of the magnitude of the sum.
    bound = 4 * FP32_EPS * (columns[0].abs() @ columns[1].abs().t())
    assert_within_bound(y, expected, bound, "outlier columns")


@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(0, 40),
    k=dims,
    n=dims,
    dtype=float_dtypes,
    threshold=thresholds,
    with_bias=st.booleans(),
)
def test_int8_linear_matches_float64_reference(seed, m, k, n, dtype, threshold, with_bias):
    generator = torch.Generator().manual_seed(seed)
    x, _ = planted_outliers(m, k, min(2, k), generator)
    x = x.to(dtype)
    weight = torch.randn(n, k, generator=generator).to(dtype)
    bias = torch.randn(n, generator=generator).to(dtype) if with_bias else None
    CB, SCB = F.quantize_weight(weight)
    y = F.int8_linear(x, CB, SCB, bias, threshold)
    assert y.shape == (m, n) and y.dtype == dtype
    bound = int8_linear_bound(x, weight, threshold, dtype, bias)
    assert_within_bound(y, reference_linear(x, weight, bias), bound)


def test_outlier_decomposition_beats_plain_absmax(rng):
    x, _ = planted_outliers(64, 512, 6, rng)
    x = x.half()
    weight = torch.randn(256, 512, generator=rng).half()
    CB, SCB = F.quantize_weight(weight)
    exact = reference_linear(x, weight)

    def relative_error(threshold):
        y = F.int8_linear(x, CB, SCB, threshold=threshold).double()
        return ((y - exact).norm() / exact.norm()).item()

    with_outliers, plain = relative_error(6.0), relative_error(0.0)
    assert with_outliers < 0.02
    assert plain > 2 * with_outliers


@given(seed=st.integers(0, 2**32 - 1), m=st.integers(0, 33), k=st.integers(0, 300), n=dims)
def test_int32_accumulator_is_exact(seed, m, k, n):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(-127, 128, (m, k), generator=generator, dtype=torch.int8)
    b = torch.randint(-127, 128, (n, k), generator=generator, dtype=torch.int8)
    acc = F.int8_matmul(a, b)
    assert acc.dtype == torch.int32
    assert torch.equal(acc.long(), a.long() @ b.long().t())


def test_leading_batch_dims_and_empty_batch(rng):
    weight = torch.randn(8, 16, generator=rng)
    CB, SCB = F.quantize_weight(weight)
    x = torch.randn(2, 3, 16, generator=rng).half()
    y = F.int8_linear(x, CB, SCB, threshold=6.0)
    assert y.shape == (2, 3, 8)
    flat = F.int8_linear(x.reshape(6, 16), CB, SCB, threshold=6.0)
    assert torch.equal(y.reshape(6, 8), flat)
    empty = F.int8_linear(torch.empty(0, 5, 16, dtype=torch.half), CB, SCB, threshold=6.0)
    assert empty.shape == (0, 5, 8)


def test_zero_rows_quantize_to_zero_with_zero_scale():
    x = torch.zeros(3, 10)
    x[1] = torch.arange(10) - 4.5
    q = F.quantize_rowwise(x)
    assert q.row_absmax[0] == 0 and q.row_absmax[2] == 0
    assert (q.values[0] == 0).all() and not torch.isnan(q.row_absmax).any()
    CB, SCB = F.quantize_weight(x)
    y = F.int8_linear(torch.randn(4, 10), CB, SCB)
    assert (y[:, 0] == 0).all() and torch.isfinite(y).all()


def test_non_finite_activations_propagate_to_their_row():
    weight = torch.randn(4, 8)
    CB, SCB = F.quantize_weight(weight)
    x = torch.randn(3, 8)
    x[1, 2] = float("nan")
    for threshold in (0.0, 6.0):
        y = F.int8_linear(x, CB, SCB, threshold=threshold)
        assert torch.isnan(y[1]).all()
        assert torch.isfinite(y[[0, 2]]).all()


def test_static_outlier_columns_replace_detection(rng):
    x, columns = planted_outliers(16, 64, 3, rng)
    weight = torch.randn(8, 64, generator=rng)
    CB, SCB = F.quantize_weight(weight)
    q = F.quantize_rowwise(x, outlier_cols=columns)
    assert torch.equal(q.outlier_cols, columns)
    assert torch.equal(q.row_absmax.double(), reference_row_absmax(x, 0.0, columns))
    assert (q.values[:, columns] == 0).all()
    static = F.int8_linear(x, CB, SCB, threshold=0.0, outlier_cols=columns)
    bound = int8_linear_bound(x, weight, 0.0, x.dtype, outlier_cols=columns)
    assert_within_bound(static, reference_linear(x, weight), bound, "static outlier columns")


def test_bad_inputs_raise_named_errors():
    CB, SCB = F.quantize_weight(torch.randn(4, 8))
    with pytest.raises(llmint8.UnsupportedDtypeError):
        F.int8_linear(torch.ones(2, 8, dtype=torch.int32), CB, SCB)
    with pytest.raises(llmint8.UnsupportedDtypeError):
        F.quantize_rowwise(torch.ones(2, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="features"):
        F.int8_linear(torch.ones(2, 7), CB, SCB)
    with pytest.raises(ValueError, match="SCB"):
        F.int8_linear(torch.ones(2, 8), CB, SCB[:3])
    with pytest.raises(ValueError, match="threshold"):
        F.int8_linear(torch.ones(2, 8), CB, SCB, threshold=-1.0)
    with pytest.raises(ValueError, match="outlier_cols"):
        F.int8_linear(torch.ones(2, 8), CB, SCB, outlier_cols=torch.tensor([8]))
    with pytest.raises(llmint8.UnsupportedDtypeError):
        F.int8_matmul(torch.ones(2, 8), CB)
    with pytest.raises(llmint8.UnsupportedDeviceError):
        F.int8_linear(torch.ones(2, 8, device="meta"), CB.to("meta"), SCB.to("meta"))


def test_backward_reaches_the_input(rng):
    weight = torch.randn(6, 10, generator=rng)
    CB, SCB = F.quantize_weight(weight)
    x = torch.randn(4, 10, generator=rng, requires_grad=True)
    y = F.int8_linear(x, CB, SCB, threshold=6.0)
    (grad_out := torch.randn_like(y))
    y.backward(grad_out)
    expected = grad_out @ F.dequantize_rowwise(CB, SCB)
    torch.testing.assert_close(x.grad, expected)


def _bitsandbytes_formula(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bitsandbytes' int8 weight quantization (`int8_vectorwise_quant`, its torch code), in
    float32: ``SCB = max |W|`` per row, ``CB = round(W * (127.0 / SCB))`` with torch's
    ``scalar / tensor`` (the reciprocal, then the product), zero rows to zero."""
    row_stats = weight.abs().amax(dim=1).float()
    codes = torch.round(weight * (127.0 / row_stats.unsqueeze(-1))).to(torch.int8)
    codes[row_stats == 0] = 0
    return codes, row_stats


@pytest.mark.parametrize("seed", [0, 1])
def test_weights_quantize_to_the_codes_bitsandbytes_writes(seed):
    """Byte-identical checkpoints: over 16M random fp16 weights the exact quotient 127 / absmax
    and bitsandbytes' reciprocal-times-127 differ at hundreds of .5 ties; llmint8 must take
    bitsandbytes' side at every one."""
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(4096, 4096, generator=generator) * 0.02).half()
    weight[7] = 0  # an all-zero row
    ours, our_scales = F.quantize_weight(weight)
    codes, scales = _bitsandbytes_formula(weight)
    assert torch.equal(our_scales, scales)
    mismatches = (ours != codes).sum().item()
    assert mismatches == 0, f"{mismatches} codes differ from bitsandbytes'"
    exact = torch.round(weight.float() * (torch.full_like(scales, 127.0) / scales)[:, None])
    assert (exact.nan_to_num(0).to(torch.int8) != ours).sum() > 0  # the test can tell them apart
