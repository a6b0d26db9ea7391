"""The CPU backend: the reference semantics of LLM.int8(), in plain PyTorch ops.

int8 x int8 products are accumulated exactly (`int8_matmul`); the outlier columns' own product
is summed in float64 and rounded once (the core's epilogue, `_add_outliers_and_bias`: the same
bits on every CPU); everything else is fp32.
The weight-only arithmetic multiplies the activations in fp32 by the dequantized weight, a block
of weight rows at a time (the dequantized copy never holds the whole weight).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from .. import _core

INT8_MAX = 127.0

# The core's threaded products run on the threads of torch's OpenMP runtime (a parallel region
# of it) where torch has one: its workers keep spinning for milliseconds after each parallel torch
# op, and a second pool beside them (rayon's) ran 2-5x slower on a 2-core machine
# (benches/cpu.md). LLMINT8_SHARE_OPENMP=0 keeps rayon's.
SHARES_OPENMP_THREADS = _core.share_openmp_threads(
    torch.backends.openmp.is_available() and os.environ.get("LLMINT8_SHARE_OPENMP", "1") != "0"
)

# The instructions the core uses: all the CPU has ("native"), or at most AVX2 and FMA ("avx2":
# no AVX-512, VNNI or AMX), or none of them ("portable"), from LLMINT8_CPU_INSTRUCTIONS at import:
# to measure or test on one machine the paths another CPU takes (the outputs keep their bits).
CPU_INSTRUCTIONS_ENV = "LLMINT8_CPU_INSTRUCTIONS"
try:
    CPU_INSTRUCTIONS = _core.cap_cpu_instructions(os.environ.get(CPU_INSTRUCTIONS_ENV, "native"))
except ValueError as err:
    raise ValueError(f"{CPU_INSTRUCTIONS_ENV}: {err}") from None


def quantize_rows(
    x: Tensor, threshold: float, outlier_cols: Optional[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """Row-wise absmax int8 quantization of `x` [M, K] with outlier columns taken out.

    - ``outlier_cols`` given (static mode): those columns are excluded from every row's absmax.
    - otherwise, with ``threshold > 0``: elements with ``|x| >= threshold`` are excluded from their
      row's absmax and every column holding one is an outlier column.
    Outlier columns are zero in the int8 result. Returns ``(q int8 [M, K], row_absmax fp32 [M],
    outlier_cols int64 [C])``.
    """
    xf = x.float()
    magnitude = xf.abs()
    if outlier_cols is not None:
        outlier_cols = outlier_cols.long()
        magnitude[:, outlier_cols] = 0.0
    elif threshold > 0.0:
        is_outlier = magnitude >= threshold
        outlier_cols = is_outlier.any(dim=0).nonzero().flatten()
        magnitude = magnitude.masked_fill(is_outlier, 0.0)
    else:
        outlier_cols = torch.empty(0, dtype=torch.long, device=x.device)
    if x.shape[1] == 0:
        row_absmax = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)
    else:
        row_absmax = magnitude.amax(dim=1)
    q = quantize_with_absmax(xf, row_absmax)
    q[:, outlier_cols] = 0
    return q, row_absmax, outlier_cols


def quantize_with_absmax(xf: Tensor, row_absmax: Tensor) -> Tensor:
    """``round(x * (127 / absmax))`` clamped to [-127, 127], half to even; 0 for all-zero rows.
    Non-finite products (a NaN or Inf in the row) become 0: the row's scale carries the NaN/Inf.

    ``127 / absmax`` is bitsandbytes' arithmetic, ``127.0 / row_stats`` in torch: the float32
    reciprocal of absmax, times 127, each rounded (CUDA: ``__frcp_rn(a) * 127``), so that the
    same fp16 weights give the same int8 codes in both libraries, .5 ties included."""
    quotient = row_absmax.reciprocal().mul_(INT8_MAX)
    inverse = torch.where(row_absmax > 0, quotient, torch.zeros_like(row_absmax))
    scaled = torch.round(xf * inverse[:, None])
    scaled = torch.nan_to_num(scaled, nan=0.0, posinf=INT8_MAX, neginf=-INT8_MAX)
    return scaled.clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)


# The exact int8 x int8 product on the CPU, two ways (benches/cpu.md, a 2-core x86-64 machine):
# - The core's (`_core.int8_linear`, `_core.int8_product`): each weight row read once as int8;
#   from 16 rows in blocks that stay in cache, on AMX's tiles, AVX-512 VNNI (x + 128 through
#   vpdpbusd) or AVX2 (bytes through vpmaddubsw, the sign moved onto the activations, where no
#   activation is -128, as in every LLM.int8() call; else int16 multiply-adds); threads over the
#   weight's rows. With AVX2, VNNI or AMX for every shape (AVX2 alone: 2-4x the float32
#   nn.Linear at one row from 1024 x 1024 up, 1.4-1.7x faster than the float slices below at
#   512-4096 rows of 384-4096 columns); on the portable loops up to CORE_PRODUCT_MAX_ROWS rows
#   or rows of CORE_PRODUCT_LONG_K columns or more.
# - Float BLAS on the int8 values otherwise: every product of two int8 values is an integer of
#   magnitude <= 2**14, so any partial sum over at most 1024 columns is an integer of magnitude
#   <= 2**24, which float32 holds exactly whatever the order of the additions (FMA included); the
#   product runs in slices of K of that width, each slice's exact sums converted to int32 and
#   added.
# torch._int_mm took 26-30x the time of the float32 product of the same shapes (torch 2.15) and
# returned wrong sums for K = 1 in torch 2.11. Either way the sums are exact, so the outputs are
# the same bits.
CORE_PRODUCT_MAX_ROWS = 512
CORE_PRODUCT_LONG_K = 1024
EXACT_FLOAT32_COLUMNS = 1024


CORE_PRODUCT_KERNEL = _core.int8_product_kernel()


def uses_core_product(m: int, n: int, k: int) -> bool:
    """Whether an [m, k] x [n, k]^T product runs in the core (on AVX2, AVX-512 VNNI or AMX
    always, else up to CORE_PRODUCT_MAX_ROWS rows or rows of CORE_PRODUCT_LONG_K columns or more)
    or in float BLAS."""
    if CORE_PRODUCT_KERNEL in ("amx", "avx512vnni", "avx2"):
        return True
    return m <= CORE_PRODUCT_MAX_ROWS or k >= CORE_PRODUCT_LONG_K


def int8_matmul(a: Tensor, b: Tensor) -> Tensor:
    """Exact int32 ``a @ b.T`` for int8 ``a`` [M, K] and ``b`` [N, K] (see above): the core's
    product for few rows, else float32 products of K slices of EXACT_FLOAT32_COLUMNS columns, or
    float64 ones where float32 matrix products may be computed at lower precision
    (`torch.set_float32_matmul_precision` other than "highest": oneDNN may then use bf16)."""
    (m, k), n = a.shape, b.shape[0]
    if uses_core_product(m, n, k):
        product = _core.int8_product(a.contiguous().numpy(), b.contiguous().numpy())
        return torch.from_numpy(product)
    if torch.get_float32_matmul_precision() != "highest":
        return (a.double() @ b.double().t()).to(torch.int32)
    out = None
    for start in range(0, max(k, 1), EXACT_FLOAT32_COLUMNS):
        columns = slice(start, start + EXACT_FLOAT32_COLUMNS)
        sums = (a[:, columns].float() @ b[:, columns].float().t()).to(torch.int32)
        out = sums if out is None else out.add_(sums)
    return out


# The activations the core's forward takes (`_core.int8_linear`), as numpy sees them: float32
# values, or float16 / bfloat16 bits. A bias of one of these dtypes goes in with them.
_CORE_KINDS = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def int8_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
    auto: bool = False,
) -> Tensor:
    """``x @ W.T + bias`` with W given by its int8 rows ``CB`` [N, K] and row absmax ``SCB`` [N].
    `auto` ("auto" arithmetic's call) changes nothing here: the CPU multiplies LLM.int8() at any
    number of outlier columns. Where the core multiplies (`uses_core_product`) the whole forward
    is one call of it (`_core.int8_linear`: the same float operations in the same order as
    `quantize_rows` and the scaling below, so the same bits, and no PyTorch op of its own before
    the product: torch's threads still spinning after one slowed the core's threaded product
    2-5x, benches/cpu.md). Either way the outlier columns' own product and the bias are added
    by the core's epilogue (`_add_outliers_and_bias`)."""
    if _core_serves(x, CB, SCB):
        out, _ = _core_forward(x, CB, SCB, bias, threshold, outlier_cols)
        return _in_dtype(out, bias, x.dtype)
    q, row_absmax, outlier_cols = quantize_rows(x, threshold, outlier_cols)
    accumulator = int8_matmul(q, CB)
    out = accumulator.float() * (row_absmax[:, None] / INT8_MAX) * (SCB[None, :] / INT8_MAX)
    x_cols = x[:, outlier_cols].float()
    weight_cols = CB[:, outlier_cols].float() * (SCB[:, None] / INT8_MAX)
    _add_outliers_and_bias(out, x_cols, weight_cols.t(), bias)
    return _in_dtype(out, bias, x.dtype)


def _core_serves(x: Tensor, CB: Tensor, SCB: Tensor) -> bool:
    """Whether the core's forward (`_core.int8_linear`) takes `x` [M, K] by `CB` [N, K]."""
    (m, k), n = x.shape, CB.shape[0]
    return uses_core_product(m, n, k) and x.dtype in _CORE_KINDS and SCB.dtype == torch.float32


def _add_outliers_and_bias(
    out: Tensor, x_cols: Tensor, weight_cols: Tensor, bias: Optional[Tensor]
) -> None:
    """`out` [M, N] (float32, contiguous) plus the outlier columns' product, `x_cols` [M, C] by
    `weight_cols` [C, N] (float32: the activations and the dequantized weight in those columns),
    plus a bias of the core's dtypes, in place: the core's epilogue (`_core.linear_epilogue`:
    float64 sums over the columns in their order, rounded once to float32, then the bias added
    in float32), the arithmetic of the core's forward."""
    core_bias, kind = _core_bias(bias)
    _core.linear_epilogue(
        out.numpy(), x_cols.contiguous().numpy(), weight_cols.contiguous().numpy(), core_bias, kind
    )


def _core_bias(bias: Optional[Tensor]) -> tuple[Optional[np.ndarray], str]:
    """The bias as the core takes it (an array of its values or bits, and their kind), or None
    where there is none or its dtype is not one of the core's (`_in_dtype` adds it then)."""
    kind = None if bias is None else _CORE_KINDS.get(bias.dtype)
    if kind is None:
        return None, "float32"
    return _activation_array(bias.detach().contiguous(), kind), kind


def _in_dtype(out: Tensor, bias: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """The float32 output in `dtype`, after a bias the core did not take (of another dtype:
    added as PyTorch adds it to float32)."""
    if bias is not None and bias.dtype not in _CORE_KINDS:
        out += bias
    return out if dtype == torch.float32 else out.to(dtype)


def _core_forward(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
) -> tuple[Tensor, Tensor]:
    """The core's forward of `x` by `CB` plus a bias of its dtypes: (float32 [M, N], the
    outlier columns: the static ones as given, else those `threshold` found)."""
    kind = _CORE_KINDS[x.dtype]
    static = None if outlier_cols is None else outlier_cols.long()
    core_bias, bias_kind = _core_bias(bias)
    out, found = _core.int8_linear(
        _activation_array(x.detach().contiguous(), kind), kind, CB.contiguous().numpy(),
        SCB.contiguous().numpy(), float(threshold),
        None if static is None else static.contiguous().numpy(), core_bias, bias_kind,
    )  # fmt: skip
    cols = static if static is not None else torch.from_numpy(found)
    return torch.from_numpy(out), cols


def _activation_array(x: Tensor, kind: str) -> np.ndarray:
    """Contiguous `x` as the core takes it (`_CORE_KINDS`): a numpy view of its values, or of its
    bits for float16 / bfloat16 (numpy has no bfloat16)."""
    if kind == "float32":
        return x.numpy()
    return x.view(torch.int16).numpy().view(np.uint16)


def prepare_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
    arithmetic: str,
) -> Optional[Callable[[Tensor], Tensor]]:
    """`int8_linear` for inputs shaped as `x` [..., K] (`functional.prepared_linear`), where the
    core's forward serves them: the checks done and the operands' numpy views taken once, so
    that a call costs the core's forward (a 1024 x 1024 layer at one row, called back to back:
    `functional.int8_linear` 24 us, this 15.5). The views read `CB`, `SCB` and `bias` where they
    lie now. None for the weight-only arithmetic, static outlier columns (they may be replaced
    in place), a bias not of the core's dtypes, empty or non-contiguous operands, or where float
    BLAS multiplies."""
    k = x.shape[-1]
    m = x.numel() // k if k else 0
    n = CB.shape[0]
    operands = (CB, SCB) if bias is None else (CB, SCB, bias)
    if arithmetic == "weight_only" or outlier_cols is not None or not (m and n and k):
        return None
    if not all(t.is_contiguous() for t in operands) or not _core_serves(x.reshape(m, k), CB, SCB):
        return None
    if bias is not None and bias.dtype not in _CORE_KINDS:
        return None
    kind = _CORE_KINDS[x.dtype]
    weight, scales = CB.detach().numpy(), SCB.detach().numpy()
    core_bias, bias_kind = _core_bias(bias)
    threshold, dtype = float(threshold), x.dtype
    out_shape = None if x.dim() == 2 else (*x.shape[:-1], n)
    linear = _core.int8_linear

    def forward(x: Tensor) -> Tensor:
        array = _activation_array(x.detach() if x.requires_grad else x, kind)
        out, _ = linear(
            array if out_shape is None else array.reshape(m, k),
            kind, weight, scales, threshold, None, core_bias, bias_kind,
        )  # fmt: skip
        out = torch.from_numpy(out)
        if dtype != torch.float32:
            out = out.to(dtype)
        return out if out_shape is None else out.view(out_shape)

    return forward


def free_kept_buffers() -> int:
    """Frees the buffers the core keeps for reuse (outputs of 1 MiB or more, returned when their
    tensors are freed, and the forward's scratch buffers of that size: up to 8 buffers and 256
    MiB each, so that the next buffer of a size one fits skips mapping fresh pages,
    benches/cpu.md); returns the bytes freed."""
    return _core.free_kept_buffers()


WEIGHT_ONLY_ROWS_PER_STEP = 1024


def prefers_weight_only(x: Tensor, CB: Tensor) -> bool:
    """What `arithmetic="auto"` takes on the CPU: always LLM.int8()'s int8 product."""
    return False


def weight_only_linear(
    x: Tensor, CB: Tensor, SCB: Tensor, bias: Optional[Tensor], out: Optional[Tensor] = None
) -> Tensor:
    """``x @ (CB * SCB / 127).T + bias`` in fp32, every input column in floating point."""
    m, n = x.shape[0], CB.shape[0]
    if out is None:
        out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    xf = x.float()
    for start in range(0, n, WEIGHT_ONLY_ROWS_PER_STEP):
        rows = slice(start, start + WEIGHT_ONLY_ROWS_PER_STEP)
        weight = CB[rows].float() * (SCB[rows, None] / INT8_MAX)
        block = xf @ weight.t()
        if bias is not None:
            block += bias[rows].float()
        out[:, rows] = block
    return out
