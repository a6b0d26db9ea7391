"""cuBLAS's int8 GEMM (``cublasGemmEx``, int8 in, int32 out) on PyTorch's own cuBLAS handle,
called through ctypes in the cuBLAS library PyTorch loaded.

Why not CuPy's binding: it refuses every call while a stream is captured into a CUDA graph
(``NotImplementedError``), so captured forwards could not use cuBLAS. PyTorch's handle for the
current stream (``torch.cuda.current_blas_handle()``) is bound to that stream and carries
PyTorch's workspace for it, allocated from the graph's pool during capture: the same conditions
under which PyTorch captures its own matmuls. On Hopper ``cublasGemmEx`` runs cuBLAS's wgmma
int8 kernels (benches/NOTES.md v11: ≈1.45 ms for 4096×8192×28672 on the H200, where
``torch._int_mm`` picks an Ampere mma.sync kernel and takes ≈2.1 ms).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Optional

import numpy as np
import torch

from ..errors import CublasError

CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I = 3, 10, 72
CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_GEMM_DEFAULT = 0, 1, -1
_ONE, _ZERO = np.array(1, np.int32), np.array(0, np.int32)  # host scalars (host pointer mode)

_lock = threading.Lock()
_gemm_ex: Optional[ctypes._CFuncPtr] = None
_missing: Optional[str] = None  # why cuBLAS cannot be called, once known


def loaded_cublas(maps: str) -> str:
    """The path of the one libcublas (not cublasLt) mapped in `maps`, the text of a Linux
    ``/proc/<pid>/maps``; `OSError` when there is none or more than one."""
    paths = set()
    for line in maps.splitlines():
        fields = line.split()
        path = fields[-1] if len(fields) >= 6 else ""
        if path.rsplit("/", 1)[-1].startswith("libcublas.so"):
            paths.add(path)
    if len(paths) != 1:
        raise OSError(f"expected one loaded libcublas, found {sorted(paths) or 'none'}")
    return paths.pop()


def _function():
    global _gemm_ex, _missing
    if _gemm_ex is not None or _missing is not None:
        return _gemm_ex
    with _lock:
        if _gemm_ex is None and _missing is None:
            try:
                torch.cuda.current_blas_handle()  # loads PyTorch's cuBLAS
                with open("/proc/self/maps") as maps:
                    gemm = ctypes.CDLL(loaded_cublas(maps.read())).cublasGemmEx
                c_int, c_void = ctypes.c_int, ctypes.c_void_p
                gemm.argtypes = [c_void, c_int, c_int, c_int, c_int, c_int, c_void, c_void,
                                 c_int, c_int, c_void, c_int, c_int, c_void, c_void, c_int,
                                 c_int, c_int, c_int]  # fmt: skip
                gemm.restype = c_int
                _gemm_ex = gemm
            except (OSError, AttributeError, RuntimeError) as err:
                # no /proc, no such library or symbol, no CUDA context for PyTorch's handle
                _missing = str(err)
    return _gemm_ex


def available() -> bool:
    """Whether `int8_gemm` can run in this process (Linux, PyTorch's cuBLAS found)."""
    return _function() is not None


def int8_gemm(m: int, n: int, k: int, a: int, lda: int, b: int, ldb: int, c: int) -> None:
    """``c = a @ b.T`` in int32 on PyTorch's current stream: row-major int8 a [M, K] (row stride
    lda) and b [N, K] (ldb), int32 c [M, N] (row stride N). Capturable into a CUDA graph."""
    gemm = _function()
    if gemm is None:
        raise CublasError(f"cuBLAS is not available to llmint8: {_missing}")
    # Column-major view: C^T [N, M] = B [N, K] x A^T [K, M].
    status = gemm(
        torch.cuda.current_blas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, _ONE.ctypes.data, b,
        CUDA_R_8I, ldb, a, CUDA_R_8I, lda, _ZERO.ctypes.data, c, CUDA_R_32I, n,
        CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT,
    )  # fmt: skip
    if status:
        raise CublasError(f"cublasGemmEx (int8, {m}x{n}x{k}) failed with status {status}")
