"""Hostile values through the Python API (CPU backend): NaN/Inf/denormal activations, zero rows
and columns, every column an outlier, thresholds 0 and huge, K = 1, M = 0, non-contiguous and
transposed inputs, fp16/bf16/fp32. Each result is either correct against the float64 reference
or a named error.

The NaN/Inf policy (README, Numerics): non-finite activations propagate to their own row's output
— every element of it is non-finite, as an fp16 matmul would make it — and leave every other row
exact to the usual bound; weights holding NaN/Inf are refused with `QuantizationError`."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import llmint8
from llmint8 import functional as F

from .helpers import assert_within_bound, int8_linear_bound, reference_linear

SPECIALS = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "denormal": 1e-41,
    "tiny": 1e-7,
    "zero": 0.0,
}
LAYOUTS = ["contiguous", "transposed", "strided"]


@st.composite
def hostile_case(draw):
    m = draw(st.integers(0, 9))
    k = draw(st.integers(1, 40))
    n = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([torch.float16, torch.bfloat16, torch.float32]))
    seed = draw(st.integers(0, 2**31))
    generator = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    x = torch.randn(m, k, generator=generator) * scale
    if m and draw(st.booleans()):
        x[draw(st.integers(0, m - 1))] = 0.0  # a zero row
    if draw(st.booleans()):
        x[:, draw(st.integers(0, k - 1))] = 0.0  # a zero column
    for _ in range(draw(st.integers(0, 3)) if m else 0):
        value = SPECIALS[draw(st.sampled_from(sorted(SPECIALS)))]
        x[draw(st.integers(0, m - 1)), draw(st.integers(0, k - 1))] = value
    weight = torch.randn(n, k, generator=generator) * draw(st.sampled_from([1e-30, 1e-2, 1.0]))
    if draw(st.booleans()):
        weight[draw(st.integers(0, n - 1))] = 0.0  # a zero weight row
    threshold = draw(st.sampled_from([0.0, 1e-3, 6.0, 1e30]))
    return x.to(dtype), weight, threshold, draw(st.sampled_from(LAYOUTS))


def _with_layout(x, layout):
    if layout == "transposed":
        return x.t().contiguous().t()  # same values, column-major strides
    if layout == "strided":
        wide = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=x.dtype)
        wide[:, ::2] = x
        return wide[:, ::2]  # every other column of a wider tensor
    return x


@settings(max_examples=400)
@given(case=hostile_case())
def test_hostile_activations_are_exact_or_propagate_in_their_row(case):
    x, weight, threshold, layout = case
    CB, SCB = F.quantize_weight(weight)
    y = F.int8_linear(_with_layout(x, layout), CB, SCB, threshold=threshold)
    assert y.shape == (x.shape[0], weight.shape[0]) and y.dtype == x.dtype
    bad_rows = ~torch.isfinite(x.float()).all(dim=1)
    assert (~torch.isfinite(y[bad_rows].float())).all(), "a non-finite input row came out finite"
    good = ~bad_rows
    if good.any():
        # The weight the layer really holds is the dequantized one; bound against the original.
        bound = int8_linear_bound(x[good], weight.to(x.dtype).float(), threshold, x.dtype)
        assert_within_bound(
            y[good], reference_linear(x[good], weight.to(x.dtype).float()), bound, "hostile"
        )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_by_name(value):
    layer = llmint8.nn.Linear8bitLt(6, 4, has_fp16_weights=False)
    with torch.no_grad():
        layer.weight[2, 3] = value
    with pytest.raises(llmint8.QuantizationError, match=r"weight: rows \[2\]"):
        layer.to("cpu")


def test_every_column_an_outlier_runs_fully_in_floating_point():
    x = torch.randn(5, 16) * 100
    weight = torch.randn(3, 16)
    CB, SCB = F.quantize_weight(weight)
    y = F.int8_linear(x, CB, SCB, threshold=1e-6)
    # Only the weight's int8 rounding remains: the activations never went through int8.
    dense = F.dequantize_rowwise(CB, SCB)
    torch.testing.assert_close(y, x @ dense.t(), rtol=1e-5, atol=1e-3)


def test_inputs_on_another_device_than_the_weights_are_named():
    CB, SCB = F.quantize_weight(torch.randn(4, 8))
    with pytest.raises(llmint8.DeviceMismatchError, match="one device"):
        F.int8_linear(torch.ones(2, 8), CB.to("meta"), SCB)


def test_mixed_dtypes_follow_the_input():
    weight = torch.randn(4, 8)
    bias = torch.randn(4, dtype=torch.bfloat16)
    CB, SCB = F.quantize_weight(weight.half())
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        x = torch.randn(3, 8, dtype=dtype)
        y = F.int8_linear(x, CB, SCB, bias=bias, threshold=6.0)
        assert y.dtype == dtype
        bound = int8_linear_bound(x, weight.half().float(), 6.0, dtype, bias=bias.float())
        reference = reference_linear(x, weight.half().float(), bias.float())
        assert_within_bound(y, reference, bound, f"{dtype}")
