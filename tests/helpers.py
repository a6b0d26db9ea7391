"""The float64 reference of LLM.int8() and the one tolerance every test uses.

The tolerance is derived from the quantization step: rounding to int8 moves each element by at most
half a step, ``absmax / 254`` of its row, so a product of quantized operands differs from the exact
one by at most the propagated sum of those half-steps, plus the rounding of the output dtype.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

STEP = 254.0  # a row's absmax over 254 is half a quantization step
FP32_EPS = 2.0**-24


def reference_outlier_mask(
    x: Tensor, threshold: float, outlier_cols: Optional[Tensor] = None
) -> Tensor:
    """Per column of x [M, K], whether it is an outlier column: one of the static `outlier_cols`
    when given, else any |x| >= threshold (never, for threshold 0)."""
    if outlier_cols is not None:
        mask = torch.zeros(x.shape[1], dtype=torch.bool)
        mask[outlier_cols] = True
        return mask
    if threshold <= 0:
        return torch.zeros(x.shape[1], dtype=torch.bool)
    return (x.double().abs() >= threshold).any(dim=0)


def reference_row_absmax(
    x: Tensor, threshold: float, outlier_cols: Optional[Tensor] = None
) -> Tensor:
    """Row absmax, float64, over the elements below the threshold (all of them for threshold 0),
    or over the columns outside the static `outlier_cols` when given."""
    magnitude = x.double().abs()
    if outlier_cols is not None:
        magnitude[:, outlier_cols] = 0.0
    elif threshold > 0:
        magnitude = magnitude.masked_fill(magnitude >= threshold, 0.0)
    if x.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=torch.float64)
    return magnitude.amax(dim=1)


def dequantization_bound(row_absmax: Tensor, values: Tensor) -> Tensor:
    """Bound on |x - CB * SCB / 127| per element of x [rows, cols] for dequantization done in fp32:
    half a step plus the fp32 rounding of the product and the division."""
    return row_absmax.double()[:, None] / STEP + 4 * FP32_EPS * values.double().abs()


def reference_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """The exact product in float64."""
    y = x.double() @ weight.double().t()
    return y if bias is None else y + bias.double()


def int8_linear_bound(
    x: Tensor,
    weight: Tensor,
    threshold: float,
    out_dtype: torch.dtype,
    bias: Optional[Tensor] = None,
    outlier_cols: Optional[Tensor] = None,
) -> Tensor:
    """Elementwise bound on |int8_linear(x, quantize(W)) - x @ W.T| for x [M, K], W [N, K]."""
    x64, w64 = x.double(), weight.double()
    x_absmax = reference_row_absmax(x, threshold, outlier_cols)  # [M]
    w_absmax = (
        w64.abs().amax(dim=1) if w64.shape[1] else torch.zeros(w64.shape[0], dtype=torch.float64)
    )
    inlier_cols = ~reference_outlier_mask(x, threshold, outlier_cols)
    # Weight rounding touches every column (outlier columns use the dequantized weight too).
    weight_term = x64.abs().sum(dim=1)[:, None] * (w_absmax / STEP)[None, :]
    # Activation rounding touches only the int8 (non-outlier) columns.
    activation_term = (x_absmax / STEP)[:, None] * w64[:, inlier_cols].abs().sum(dim=1)[None, :]
    cross_term = int(inlier_cols.sum()) * (x_absmax / STEP)[:, None] * (w_absmax / STEP)[None, :]
    magnitude = x64.abs() @ w64.abs().t()
    y = reference_linear(x, weight, bias).abs()
    out = torch.finfo(out_dtype)
    # Relative rounding of the output dtype, plus its absolute rounding near zero (a result
    # below the smallest subnormal rounds to 0 or to it).
    underflow = out.smallest_normal * out.eps
    rounding = out.eps * (y + magnitude) + underflow + 2 * FP32_EPS * magnitude * max(1, x.shape[1])
    return weight_term + activation_term + cross_term + rounding + 1e-30


def weight_only_bound(
    x: Tensor, CB: Tensor, SCB: Tensor, out_dtype: torch.dtype, bias: Optional[Tensor] = None
) -> Tensor:
    """Elementwise bound on |weight_only_linear(x, CB, SCB) - x @ (CB * SCB / 127).T| for x
    [M, K]: no quantization step (the products are exact), only fp32 accumulation in any order
    and the rounding of the output dtype."""
    weight = CB.double() * (SCB.double()[:, None] / 127.0)
    magnitude = x.double().abs() @ weight.abs().t()
    y = reference_linear(x, weight, bias).abs()
    out = torch.finfo(out_dtype)
    underflow = out.smallest_normal * out.eps
    return out.eps * y + 2 * FP32_EPS * magnitude * max(1, x.shape[1]) + underflow + 1e-30


def assert_within_bound(actual: Tensor, expected: Tensor, bound: Tensor, what: str = "") -> None:
    err = (actual.double() - expected.double()).abs()
    worst = (err / bound).max().item() if err.numel() else 0.0
    assert worst <= 1.0, f"{what} error exceeds the quantization bound by {worst:.3f}x"


def planted_outliers(
    rows: int, cols: int, n_outliers: int, generator: torch.Generator, scale: float = 20.0
) -> tuple[Tensor, Tensor]:
    """Normal activations with `n_outliers` feature columns scaled by `scale` (LLM.int8()'s
    systematic outlier features). Returns (x float32, outlier column indices)."""
    x = torch.randn(rows, cols, generator=generator)
    columns = torch.randperm(cols, generator=generator)[:n_outliers]
    x[:, columns] *= scale
    return x, columns.sort().values
