"""The CUDA backend: kernels from ``llmint8/kernels/*.cu`` (the repository's ``cuda/``), compiled
by NVRTC through CuPy on first use and launched on PyTorch's current stream, on torch tensors'
memory without copies.

Kernel choice: few rows (M <= 16) or GPUs without int8 ``mma.sync.m16n8k32`` (sm_75) go to the
dp4a kernel that streams the weights once (``int8_gemv.cu``); up to CUBLAS_MIN_ROWS rows to the
tensor-core GEMM with the fused epilogue (``int8_gemm.cu``); from there on (K a multiple of 16)
cuBLAS's int8 GEMM (``cublasGemmEx``, wgmma on Hopper) computes the int32 product and the same
epilogue kernel (MODE 2) turns it into the output, because the hand-written mma.sync GEMM reaches
only about a third of cuBLAS's rate at large M. The forward path never synchronises with the
host: outlier columns travel as a device bitmask.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import UnsupportedDeviceError

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
MIN_CAPABILITY = (7, 5)
MMA_CAPABILITY = (8, 0)
GEMV_MAX_ROWS = 16
GEMV_ROW_GROUPS = (1, 4, 8, 16)  # int8_gemv.cu's MAXM instantiations
CUBLAS_MIN_ROWS = 256
GEMV_ROWS_PER_BLOCK = 16
GEMM_TILE = 128
GEMM_SMEM_BYTES = 3 * (128 + 128) * (128 + 16)  # int8_gemm.cu: STAGES * (BM + BN) * LDS
THREADS = 256

MODE_PLAIN, MODE_DETECT, MODE_STATIC = 0, 1, 2
C_TYPES = {torch.float16: "__half", torch.bfloat16: "__nv_bfloat16", torch.float32: "float"}
BIAS_KINDS = {torch.float16: 1, torch.bfloat16: 2, torch.float32: 3}  # common.cuh load_bias
CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUBLAS_OP_N, CUBLAS_OP_T = 3, 10, 72, 0, 1
_ONE, _ZERO = np.array(1, np.int32), np.array(0, np.int32)  # host scalars for gemmEx

_lock = threading.Lock()
_functions: dict[tuple, Any] = {}
_streams: dict[tuple[int, int], Any] = {}


def _cupy():
    try:
        import cupy
    except ImportError as err:
        raise UnsupportedDeviceError(
            f"the CUDA backend needs CuPy ({err}); install it with: pip install 'llmint8[cuda]'"
        ) from None
    return cupy


_capabilities: dict[int, tuple[int, int]] = {}


def check_device(device: torch.device) -> tuple[int, int]:
    """The compute capability of `device`, or `UnsupportedDeviceError` below sm_75."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    capability = _capabilities.get(index)
    if capability is not None:
        return capability
    capability = torch.cuda.get_device_capability(index)
    _capabilities[index] = capability
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise UnsupportedDeviceError(
            f"{name} (sm_{capability[0]}{capability[1]}) is older than sm_75, the oldest GPU "
            "llmint8's kernels support"
        )
    return capability


def _function(device: torch.device, file: str, expression: str):
    """The compiled kernel `expression` of `file` for `device` (compiled once per process and
    architecture, under a lock so that concurrent first calls compile once)."""
    key = (device.index, file, expression)
    function = _functions.get(key)
    if function is not None:
        return function
    capability = check_device(device)
    cupy = _cupy()
    with _lock:
        function = _functions.get(key)
        if function is None:
            expressions = _EXPRESSIONS[file]
            with cupy.cuda.Device(device.index):
                module = cupy.RawModule(
                    code=(KERNEL_DIR / file).read_text(),
                    options=("--std=c++17", f"-I{KERNEL_DIR}"),
                    name_expressions=expressions,
                )
                for name in expressions:
                    if file == "int8_gemm.cu" and capability < MMA_CAPABILITY:
                        continue  # int8 mma.sync m16n8k32 needs sm_80; sm_75 uses the GEMV
                    compiled = module.get_function(name)
                    if file == "int8_gemm.cu":
                        compiled.max_dynamic_shared_size_bytes = GEMM_SMEM_BYTES
                    _functions[(device.index, file, name)] = compiled
            function = _functions[key]
    return function


def _gemm_names() -> list[str]:
    names = [f"int8_gemm<{t}, {a}, 1>" for t in C_TYPES.values() for a in ("true", "false")]
    staged = [f"int8_gemm<{t}, true, 2>" for t in C_TYPES.values()]
    return [*names, "int8_gemm<__half, true, 0>", "int8_gemm<__half, false, 0>", *staged]


def _gemv_names() -> list[str]:
    names = [
        f"int8_gemv<{t}, {m}, {a}, 1>"
        for t in C_TYPES.values()
        for m in GEMV_ROW_GROUPS
        for a in ("true", "false")
    ]
    return [*names, "int8_gemv<__half, 16, true, 0>", "int8_gemv<__half, 16, false, 0>"]


_EXPRESSIONS = {
    "quantize_rows.cu": [f"quantize_rows<{t}>" for t in C_TYPES.values()],
    "int8_gemm.cu": _gemm_names(),
    "int8_gemv.cu": _gemv_names(),
}


class _StreamHandle:
    """A raw stream pointer offered through the CUDA stream protocol (for CuPy)."""

    def __init__(self, pointer: int) -> None:
        self.pointer = pointer

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.pointer)


def _stream(device: torch.device):
    # Read on every call: graph capture and user code switch streams.
    pointer = torch._C._cuda_getCurrentRawStream(device.index)
    key = (device.index, pointer)
    stream = _streams.get(key)
    if stream is None:
        stream = _cupy().cuda.Stream.from_external(_StreamHandle(pointer))
        _streams[key] = stream
    return stream


def _launch(device: torch.device, file: str, expression: str, grid, args, shared_mem: int = 0):
    function = _function(device, file, expression)
    cupy = _cupy()
    stream = _stream(device)
    if cupy.cuda.runtime.getDevice() == device.index:
        with stream:
            function(grid, (THREADS,), args, shared_mem=shared_mem)
    else:
        with cupy.cuda.Device(device.index), stream:
            function(grid, (THREADS,), args, shared_mem=shared_mem)


def _ptr(t: Optional[Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


def _aligned(*tensors: Tensor, k: int) -> bool:
    return k % 16 == 0 and all(t.data_ptr() % 16 == 0 and t.stride(0) % 16 == 0 for t in tensors)


def _mask_words(k: int) -> int:
    return (k + 31) // 32


def _static_mask(outlier_cols: Tensor, k: int) -> Tensor:
    cols = outlier_cols.to(device=outlier_cols.device, dtype=torch.int64)
    words = torch.zeros(_mask_words(k), dtype=torch.int64, device=cols.device)
    words.index_add_(0, cols // 32, torch.ones_like(cols) << (cols % 32))
    return words.to(torch.int32)  # bits 31 wrap to the int32 sign bit, as uint32 expects


def _quantize(x: Tensor, threshold: float, outlier_cols: Optional[Tensor]):
    """Launches the quantize kernel: ``(q, absmax, mask or None)``; no host sync."""
    m, k = x.shape
    q = torch.empty((m, k), dtype=torch.int8, device=x.device)
    absmax = torch.empty(m, dtype=torch.float32, device=x.device)
    if outlier_cols is not None:
        mask, mode = _static_mask(outlier_cols, k), MODE_STATIC
    elif threshold > 0:
        mask, mode = torch.zeros(_mask_words(k), dtype=torch.int32, device=x.device), MODE_DETECT
    else:
        mask, mode = None, MODE_PLAIN
    if m > 0:
        args = (
            x.data_ptr(),
            q.data_ptr(),
            absmax.data_ptr(),
            _ptr(mask),
            np.int64(m),
            np.int32(k),
            np.int32(k),
            np.float32(threshold),
            np.int32(mode),
        )
        _launch(x.device, "quantize_rows.cu", f"quantize_rows<{C_TYPES[x.dtype]}>", (m,), args)
    return q, absmax, mask


def quantize_rows(
    x: Tensor, threshold: float, outlier_cols: Optional[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """As the CPU backend. This entry point returns the outlier columns as an index tensor, which
    needs one host sync; the forward path (`int8_linear`) keeps them on the device."""
    x = x.contiguous()
    q, absmax, mask = _quantize(x, threshold, outlier_cols)
    if mask is None:
        return q, absmax, torch.empty(0, dtype=torch.long, device=x.device)
    bits = (mask.to(torch.int64) & 0xFFFFFFFF)[:, None] >> torch.arange(32, device=x.device)
    columns = (bits & 1).flatten()[: x.shape[1]].nonzero().flatten()
    q[:, columns] = 0
    return q, absmax, columns


def _cublas_int8(a: Tensor, b: Tensor, c: Tensor) -> None:
    """``c = a @ b.T`` in int32 by cuBLAS (row-major a [M, K], b [N, K], c [M, N])."""
    cupy = _cupy()
    from cupy_backends.cuda.libs import cublas

    m, k = a.shape
    n = b.shape[0]
    with cupy.cuda.Device(a.device.index):
        handle = cupy.cuda.device.get_cublas_handle()
        cublas.setStream(handle, torch._C._cuda_getCurrentRawStream(a.device.index))
        # Column-major view: C^T [N, M] = B [N, K] x A^T [K, M].
        cublas.gemmEx(
            handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, _ONE.ctypes.data, b.data_ptr(), CUDA_R_8I,
            b.stride(0), a.data_ptr(), CUDA_R_8I, a.stride(0), _ZERO.ctypes.data, c.data_ptr(),
            CUDA_R_32I, c.stride(0), CUBLAS_COMPUTE_32I, -1,
        )  # fmt: skip


def _matmul_launch(a, b, absmax, scb, bias, x, mask, out, out_i32, mode, dtype):
    m, k = a.shape
    n = b.shape[0]
    aligned = _aligned(a, b, k=k)
    use_mma = check_device(a.device) >= MMA_CAPABILITY
    # CuPy refuses cuBLAS calls while a CUDA graph is being captured: the own GEMM serves then.
    use_cublas = use_mma and aligned and m >= CUBLAS_MIN_ROWS and n % 4 == 0
    if mode == 1 and use_cublas and not torch.cuda.is_current_stream_capturing():
        out_i32 = torch.empty((m, n), dtype=torch.int32, device=a.device)
        _cublas_int8(a, b, out_i32)
        mode = 2
    ldo = out.stride(0) if out is not None else out_i32.stride(0)
    args = (
        a.data_ptr(), b.data_ptr(), np.int32(m), np.int32(n), np.int32(k), np.int32(a.stride(0)),
        np.int32(b.stride(0)), _ptr(absmax), _ptr(scb), _ptr(bias),
        np.int32(0 if bias is None else BIAS_KINDS[bias.dtype]), _ptr(x),
        np.int32(x.stride(0) if x is not None else k), _ptr(mask), _ptr(out), _ptr(out_i32),
        np.int32(ldo),
    )  # fmt: skip
    t = C_TYPES[dtype]
    flag = "true" if aligned else "false"
    if mode != 2 and (m <= GEMV_MAX_ROWS or not use_mma):
        rows = GEMV_MAX_ROWS if mode == 0 else next(r for r in GEMV_ROW_GROUPS if r >= min(m, 16))
        grid = ((n + GEMV_ROWS_PER_BLOCK - 1) // GEMV_ROWS_PER_BLOCK, (m + rows - 1) // rows)
        _launch(a.device, "int8_gemv.cu", f"int8_gemv<{t}, {rows}, {flag}, {mode}>", grid, args)
    else:
        grid = ((n + GEMM_TILE - 1) // GEMM_TILE, (m + GEMM_TILE - 1) // GEMM_TILE)
        expression = f"int8_gemm<{t}, {flag}, {mode}>"
        _launch(a.device, "int8_gemm.cu", expression, grid, args, shared_mem=GEMM_SMEM_BYTES)


def int8_matmul(a: Tensor, b: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """Exact int32 ``a @ b.T`` (no epilogue), into `out` when given (tests poison it)."""
    a, b = a.contiguous(), b.contiguous()
    if out is None:
        out = torch.empty((a.shape[0], b.shape[0]), dtype=torch.int32, device=a.device)
    if a.shape[0] and b.shape[0]:
        _matmul_launch(a, b, None, None, None, None, None, None, out, 0, torch.float16)
    elif out.numel():
        out.zero_()
    return out


def int8_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
    out: Optional[Tensor] = None,
) -> Tensor:
    """LLM.int8() linear: one quantize launch and one fused matmul launch, no host sync. Writes
    into `out` ([M, N], x.dtype, contiguous) when given."""
    x, CB = x.contiguous(), CB.contiguous()
    m, n = x.shape[0], CB.shape[0]
    if out is None:
        out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return out
    if x.shape[1] == 0:
        return out.zero_() if bias is None else out.copy_(bias.expand(m, n))
    q, absmax, mask = _quantize(x, threshold, outlier_cols)
    bias = None if bias is None else bias.contiguous()
    _matmul_launch(q, CB, absmax, SCB.contiguous(), bias, x, mask, out, None, 1, x.dtype)
    return out
