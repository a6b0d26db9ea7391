"""The math of LLM.int8(), device-agnostic; each call dispatches to the backend of its tensors.

Numerics (every backend follows them; the CPU backend is the reference):

- Row-wise absmax quantization: ``q = round(x * (127 / absmax_row))`` computed in fp32 as
  bitsandbytes computes it (``127 / absmax`` as the fp32 reciprocal times 127), rounded half to
  even, clamped to [-127, 127]. An all-zero row has absmax 0 and quantizes to zeros.
- Outlier columns (``threshold > 0``): every input column holding an element with
  ``|x| >= threshold``. Such elements are left out of their row's absmax, and the whole column is
  zero in the int8 operand and multiplied in floating point against the dequantized weight column.
  A static (calibrated) column set can be given instead: detection is then skipped and those
  columns are left out of the absmax entirely.
- ``int8 x int8`` products accumulate exactly in int32, then
  ``y = acc * (absmax_x[m] / 127) * (SCB[n] / 127) + x[:, C] @ W_deq[:, C].T + bias``.
- Non-finite inputs propagate: a NaN in a row makes that row's output NaN, as in fp16.
- Weight-only arithmetic (``arithmetic="weight_only"``, and ``"auto"`` where the backend finds it
  faster: fp16 / bf16 activations of few rows on a GPU): ``y = x @ (CB * SCB / 127).T + bias``
  with ``x`` in its own precision, fp32 accumulation. No activation is quantized and every column
  is computed in floating point, so its error is that of the weight's quantization alone, below
  LLM.int8()'s; ``arithmetic="int8"`` forces LLM.int8()'s int8 product everywhere. Where "auto"
  takes LLM.int8() on a GPU whose kernels can, an input with many outlier columns is multiplied
  weight-only instead, decided on the GPU by their count (backends/cuda.py's
  ``_hand_over_above``).

Accepted activations: float16, bfloat16 and float32 (computed like the others; the output has the
input's dtype). Weights of any floating dtype are quantized without a round trip through fp16.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from ._ops import int8_linear_op
from .backends import ARITHMETICS, backend_for, dequantized, linear
from .errors import DeviceMismatchError, QuantizationError, UnsupportedDtypeError

__all__ = [
    "ARITHMETICS",
    "FLOAT_DTYPES",
    "RowQuantized",
    "dequantize_rowwise",
    "int8_linear",
    "int8_matmul",
    "prepared_linear",
    "quantize_rowwise",
    "quantize_weight",
]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INT8_MAX = 127.0
# |int8 x int8| <= 127 * 127: above this K an int32 accumulator could overflow.
MAX_IN_FEATURES = (2**31 - 1) // (127 * 127)


class RowQuantized(NamedTuple):
    """A matrix quantized row by row."""

    values: Tensor
    """int8 ``[rows, cols]``; outlier columns are zero."""
    row_absmax: Tensor
    """float32 ``[rows]``: the absmax of each row over its non-outlier elements."""
    outlier_cols: Tensor
    """int64 ``[C]``: the outlier columns, ascending (empty when there are none)."""


def checked_threshold(threshold: float) -> float:
    """`threshold` as a float; `ValueError` unless it is a finite number >= 0 (a NaN threshold
    would silently detect no outliers)."""
    value = float(threshold)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    return value


def checked_arithmetic(arithmetic: str) -> str:
    """`arithmetic` if it is one of ARITHMETICS, else `ValueError` naming them."""
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {', '.join(ARITHMETICS)}; got {arithmetic!r}")
    return arithmetic


def _check_float(name: str, t: Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES and t.dtype != torch.float64:
        raise UnsupportedDtypeError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")


def _check_outlier_cols(outlier_cols: Optional[Tensor], in_features: int) -> Optional[Tensor]:
    if outlier_cols is None:
        return None
    if outlier_cols.dim() != 1 or outlier_cols.dtype.is_floating_point:
        raise ValueError(
            f"outlier_cols must be a 1-D integer tensor, got {outlier_cols.dtype} "
            f"{tuple(outlier_cols.shape)}"
        )
    # Range-checked here only on the CPU: on an accelerator it would cost a host sync per call
    # (layers check their static columns once, when they are set).
    if (
        outlier_cols.device.type == "cpu"
        and outlier_cols.numel()
        and (int(outlier_cols.min()) < 0 or int(outlier_cols.max()) >= in_features)
    ):
        raise ValueError(f"outlier_cols must lie in [0, {in_features})")
    return outlier_cols  # as given: the CUDA backend caches its bitmask on this tensor


def quantize_rowwise(
    x: Tensor, threshold: float = 0.0, outlier_cols: Optional[Tensor] = None
) -> RowQuantized:
    """Quantizes each row of ``x`` [..., K] to int8 with its absmax, taking outlier columns out.

    Leading dims are flattened: the result has ``prod(leading)`` rows.
    """
    _check_float("x", x)
    threshold = checked_threshold(threshold)
    x2d = x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
    cols = _check_outlier_cols(outlier_cols, x2d.shape[1])
    backend = backend_for(x.device)
    return RowQuantized(*backend.quantize_rows(x2d, float(threshold), cols))


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(CB, SCB)`` of a weight [N, K]: int8 rows and their float32 absmax (no outliers)."""
    if weight.dim() != 2:
        raise ValueError(
            f"weight must be 2-D [out_features, in_features], got {tuple(weight.shape)}"
        )
    q = quantize_rowwise(weight)
    return q.values, q.row_absmax


def refuse_nonfinite_rows(row_absmax: Tensor, name: str) -> None:
    """`QuantizationError` naming `name` (the weight, as its owner calls it) and its first rows
    when a quantized weight's row absmax is NaN or Inf, i.e. the rows held such values. A host
    sync: called once per weight, at conversion, never per forward."""
    finite = torch.isfinite(row_absmax)
    if not bool(finite.all()):
        rows = (~finite).nonzero().flatten()[:8].tolist()
        raise QuantizationError(f"{name}: rows {rows} hold NaN or Inf values; refusing to quantize")


def dequantize_rowwise(
    values: Tensor, row_absmax: Tensor, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``values * row_absmax[:, None] / 127`` in `dtype`: the inverse of `quantize_rowwise` up to
    half a quantization step (``absmax / 254``) per element."""
    if values.dtype != torch.int8:
        raise UnsupportedDtypeError(f"values must be int8, got {values.dtype}")
    if row_absmax.shape != values.shape[:1]:
        raise ValueError(
            f"row_absmax has shape {tuple(row_absmax.shape)}, expected ({values.shape[0]},)"
        )
    return dequantized(values, row_absmax, dtype)


def int8_matmul(a: Tensor, b: Tensor) -> Tensor:
    """Exact int32 ``a @ b.T`` of int8 ``a`` [M, K] and int8 ``b`` [N, K]."""
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise UnsupportedDtypeError(f"int8_matmul takes int8 operands, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"int8_matmul needs [M, K] and [N, K], got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        raise DeviceMismatchError(f"operands on different devices: {a.device} and {b.device}")
    return backend_for(a.device).int8_matmul(a, b)


def _check_linear(x: Tensor, CB: Tensor, SCB: Tensor, bias: Optional[Tensor]) -> None:
    _check_float("x", x)
    if CB.dtype != torch.int8 or CB.dim() != 2:
        raise UnsupportedDtypeError(
            f"CB must be an int8 [out, in] matrix, got {CB.dtype} {tuple(CB.shape)}"
        )
    n, k = CB.shape
    if x.shape[-1] != k:
        raise ValueError(f"x has {x.shape[-1]} features, the weight expects {k}")
    if k > MAX_IN_FEATURES:
        raise ValueError(
            f"in_features {k} exceeds {MAX_IN_FEATURES}: int32 accumulators could overflow"
        )
    if SCB.shape != (n,) or SCB.dtype != torch.float32:
        raise ValueError(f"SCB must be float32 [{n}], got {SCB.dtype} {tuple(SCB.shape)}")
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"bias must have shape [{n}], got {tuple(bias.shape)}")
    devices = {t.device for t in (x, CB, SCB, bias) if t is not None}
    if len(devices) > 1:
        raise DeviceMismatchError(
            f"x, CB, SCB and bias must be on one device, got {sorted(map(str, devices))}"
        )


class _Int8Linear(torch.autograd.Function):
    """Forward in int8; backward in floating point against the dequantized (or master) weight."""

    @staticmethod
    def forward(ctx, x, CB, SCB, bias, threshold, outlier_cols, master_weight, arithmetic):
        x2d = x.reshape(-1, x.shape[-1])
        y = linear(x2d, CB, SCB, bias, threshold, outlier_cols, arithmetic)
        ctx.save_for_backward(x, CB, SCB, master_weight)
        ctx.has_bias = bias is not None
        return y.reshape(*x.shape[:-1], CB.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, CB, SCB, master_weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        g2d = grad_out.reshape(-1, grad_out.shape[-1])
        if ctx.needs_input_grad[0]:
            if master_weight is not None:
                weight = master_weight.to(grad_out.dtype)
            else:
                weight = dequantize_rowwise(CB, SCB, grad_out.dtype)
            grad_x = (g2d @ weight).reshape(x.shape).to(x.dtype)
        if ctx.needs_input_grad[6]:
            x2d = x.reshape(-1, x.shape[-1])
            grad_weight = (g2d.t().float() @ x2d.float()).to(master_weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = g2d.float().sum(0)
        return grad_x, None, None, grad_bias, None, None, grad_weight, None


def int8_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor] = None,
    threshold: float = 0.0,
    outlier_cols: Optional[Tensor] = None,
    master_weight: Optional[Tensor] = None,
    arithmetic: str = "auto",
) -> Tensor:
    """LLM.int8() ``x @ W.T + bias`` for ``x`` [..., K], W given by ``CB`` int8 [N, K] and ``SCB``
    float32 [N]. Returns [..., N] in ``x.dtype``.

    ``threshold > 0`` detects outlier columns per call; ``outlier_cols`` (int [C]) fixes them
    instead. ``master_weight`` (the fp weight, when the layer trains it) receives the gradient; the
    input always does. ``arithmetic``: ``"int8"`` (LLM.int8()), ``"weight_only"`` (activations in
    floating point times the dequantized weight, no outlier columns needed) or ``"auto"`` (the
    faster of the two for the call; see the module docstring).
    """
    _check_linear(x, CB, SCB, bias)
    threshold = checked_threshold(threshold)
    arithmetic = checked_arithmetic(arithmetic)
    if torch.compiler.is_compiling() and master_weight is None:
        # Traced by torch.compile: one opaque custom op (no graph break, no data-dependent check).
        y = int8_linear_op(
            x.reshape(-1, x.shape[-1]), CB, SCB, bias, float(threshold), outlier_cols, arithmetic
        )
        return y.reshape(*x.shape[:-1], CB.shape[0])
    cols = _check_outlier_cols(outlier_cols, CB.shape[1])
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad
        or (bias is not None and bias.requires_grad)
        or (master_weight is not None and master_weight.requires_grad)
    )
    if not needs_grad:
        if x.dim() == 2:
            return linear(x, CB, SCB, bias, threshold, cols, arithmetic)
        y = linear(x.reshape(-1, x.shape[-1]), CB, SCB, bias, threshold, cols, arithmetic)
        return y.reshape(*x.shape[:-1], CB.shape[0])
    return _Int8Linear.apply(x, CB, SCB, bias, threshold, cols, master_weight, arithmetic)


def prepared_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor] = None,
    threshold: float = 0.0,
    outlier_cols: Optional[Tensor] = None,
    arithmetic: str = "auto",
) -> Optional[Callable[[Tensor], Optional[Tensor]]]:
    """`int8_linear` with these operands, prepared for inputs of ``x``'s shape, dtype and device:
    a callable taking such an input (contiguous, no gradient needed) and returning what
    `int8_linear` returns, at the host cost of its kernel launches, or None when it cannot serve
    that call (launches prepared with one CUDA stream's workspace, called on another stream or
    thread, or while a CUDA graph is captured): run `int8_linear` then. None where the backend
    has no such call for ``x`` (the CUDA backend prepares the weight-only product's launch and
    LLM.int8()'s launches with outlier columns detected per call, not static ones). The callable
    reads ``CB``, ``SCB`` and ``bias`` where they lie now, and the threshold it was given:
    prepare again when any of them changes."""
    _check_linear(x, CB, SCB, bias)
    threshold = checked_threshold(threshold)
    arithmetic = checked_arithmetic(arithmetic)
    cols = _check_outlier_cols(outlier_cols, CB.shape[1])
    prepare = getattr(backend_for(x.device), "prepare_linear", None)
    return None if prepare is None else prepare(x, CB, SCB, bias, threshold, cols, arithmetic)
