"""Compiling and launching llmint8's CUDA kernels (``llmint8/kernels/*.cu``, the repository's
``cuda/``) through CuPy.

NVRTC compiles each kernel file once per process, GPU architecture and element type (CuPy keeps
the binaries in its on-disk cache across processes). A launch packs its arguments with `struct`
into a per-thread parameter buffer and hands it to ``cuLaunchKernel`` (CuPy's driver binding)
through ``CU_LAUNCH_PARAM_BUFFER_POINTER``: one driver call, no per-argument Python objects, on
PyTorch's current stream.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UnsupportedDeviceError

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
MIN_CAPABILITY = (7, 5)
MMA_CAPABILITY = (8, 0)  # int8 mma.sync m16n8k32
THREADS = 256  # every kernel runs blocks of 256 threads
C_TYPES = {torch.float16: "__half", torch.bfloat16: "__nv_bfloat16", torch.float32: "float"}

# cuLaunchKernel's `extra` keys (cuda.h).
_PARAM_BUFFER_POINTER, _PARAM_BUFFER_SIZE, _PARAM_END = 1, 2, 0

_lock = threading.Lock()
_capabilities: dict[int, tuple[int, int]] = {}
_sm_counts: dict[int, int] = {}
_shared_memory: dict[int, int] = {}
# (device index, file, expression) -> Kernel; read without the lock (dict reads are atomic).
_kernels: dict[tuple[int, str, str], Kernel] = {}
_modules: dict[tuple[int, str, str], Any] = {}
_group_locks: dict[tuple[int, str, str], threading.Lock] = {}


def cupy_module():
    try:
        import cupy
    except ImportError as err:
        raise UnsupportedDeviceError(
            f"the CUDA backend needs CuPy ({err}); install it with: pip install 'llmint8[cuda]'"
        ) from None
    return cupy


def check_device(index: int) -> tuple[int, int]:
    """The compute capability of GPU `index`, or `UnsupportedDeviceError` below sm_75."""
    capability = _capabilities.get(index)
    if capability is not None:
        return capability
    capability = torch.cuda.get_device_capability(index)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(index)
        raise UnsupportedDeviceError(
            f"{name} (sm_{capability[0]}{capability[1]}) is older than sm_75, the oldest GPU "
            "llmint8's kernels support"
        )
    _capabilities[index] = capability
    return capability


def sm_count(index: int) -> int:
    count = _sm_counts.get(index)
    if count is None:
        count = _sm_counts[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return count


def shared_memory_per_sm(index: int) -> int:
    """Bytes of shared memory one SM of GPU `index` holds (CuPy's device properties: torch has
    them only from 2.6 on)."""
    size = _shared_memory.get(index)
    if size is None:
        properties = cupy_module().cuda.runtime.getDeviceProperties(index)
        size = _shared_memory[index] = int(properties["sharedMemPerMultiprocessor"])
    return size


def current_stream(index: int) -> int:
    """PyTorch's current stream on GPU `index`, as a raw pointer (read on every call: graph
    capture and user code switch streams)."""
    return torch._C._cuda_getCurrentRawStream(index)


class Kernel:
    """One compiled kernel and the `struct` layout of its parameters (native alignment, the
    layout the CUDA ABI gives kernel parameters: pointers ``P``, int ``i``, long long ``q``,
    float ``f``)."""

    def __init__(self, function: Any, index: int, layout: str) -> None:
        self.function = function  # keeps the module loaded
        self.pointer = function.kernel.ptr  # the CUfunction (CuPy compiles lazily here)
        self.index = index
        self.layout = struct.Struct("@" + layout)
        self._local = threading.local()

    @property
    def attributes(self) -> dict:
        """The driver's attributes of the kernel (``num_regs``, ...), queried with its GPU's
        context current (a thread that has not used the GPU yet has none)."""
        with cupy_module().cuda.Device(self.index):
            return self.function.attributes

    def _buffers(self):
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            params = np.zeros((self.layout.size + 7) // 8, dtype=np.uint64)
            size = np.array([self.layout.size], dtype=np.uint64)
            extra = np.array(
                [_PARAM_BUFFER_POINTER, params.ctypes.data, _PARAM_BUFFER_SIZE, size.ctypes.data,
                 _PARAM_END],
                dtype=np.uint64,
            )  # fmt: skip
            buffers = self._local.buffers = (params, size, extra, extra.ctypes.data)
        return buffers

    def launch(self, grid: tuple[int, int, int], shared_mem: int, *args) -> None:
        """Launches on PyTorch's current stream of this kernel's GPU."""
        params, _size, _extra, extra_pointer = self._buffers()
        self.layout.pack_into(params, 0, *args)
        cupy = cupy_module()
        stream = current_stream(self.index)
        if cupy.cuda.runtime.getDevice() == self.index:
            cupy.cuda.driver.launchKernel(
                self.pointer, grid[0], grid[1], grid[2], THREADS, 1, 1, shared_mem, stream, 0,
                extra_pointer,
            )  # fmt: skip
        else:
            with cupy.cuda.Device(self.index):
                cupy.cuda.driver.launchKernel(
                    self.pointer, grid[0], grid[1], grid[2], THREADS, 1, 1, shared_mem, stream, 0,
                    extra_pointer,
                )  # fmt: skip


def kernel(index: int, file: str, expression: str) -> Kernel:
    """The compiled kernel `expression` of `file` on GPU `index`. The first call for a file and
    element type compiles every instantiation of that type (once; other groups compile in
    parallel, each under its own lock)."""
    found = _kernels.get((index, file, expression))
    if found is not None:
        return found
    check_device(index)
    if expression not in EXPRESSIONS.get(file, ()):
        raise KeyError(f"{file} has no instantiation {expression}")
    group = _type_group(expression)
    with _group_lock(index, file, group):
        if (index, file, expression) not in _kernels:
            _compile_group(index, file, group)
    return _kernels[(index, file, expression)]


def _group_lock(index: int, file: str, group: str) -> threading.Lock:
    with _lock:
        return _group_locks.setdefault((index, file, group), threading.Lock())


def _compile_group(index: int, file: str, group: str) -> None:
    cupy = cupy_module()
    names = [e for e in EXPRESSIONS[file] if _type_group(e) == group]
    with cupy.cuda.Device(index):
        module = cupy.RawModule(
            code=(KERNEL_DIR / file).read_text(),
            options=("--std=c++17", f"-I{KERNEL_DIR}"),
            name_expressions=names,
        )
        kernels = {}
        for name in names:
            function = module.get_function(name)
            if SHARED_MEMORY.get(file):
                function.max_dynamic_shared_size_bytes = SHARED_MEMORY[file](name)
            kernels[(index, file, name)] = Kernel(function, index, LAYOUTS[file])
    _modules[(index, file, group)] = module
    _kernels.update(kernels)


def precompile(index: int = 0) -> int:
    """Compiles every kernel llmint8 has for GPU `index` now rather than at first use, the
    (file, element type) groups in parallel threads (NVRTC runs without the GIL); for a server's
    start-up or before capturing CUDA graphs. CuPy's on-disk cache makes later processes fast
    either way. Returns the number of kernels ready."""
    from concurrent.futures import ThreadPoolExecutor

    check_device(index)
    firsts = {}
    for file, names in EXPRESSIONS.items():
        for name in names:
            firsts.setdefault((file, _type_group(name)), name)
    with ThreadPoolExecutor(max_workers=len(firsts)) as pool:
        for done in [pool.submit(kernel, index, f, n) for (f, _), n in firsts.items()]:
            done.result()
    return sum(1 for key in _kernels if key[0] == index)


def compiled_kernels() -> dict[tuple[int, str, str], Kernel]:
    return dict(_kernels)


def _type_group(expression: str) -> str:
    """The element type an instantiation is compiled with (its first template argument)."""
    return expression.split("<", 1)[1].split(",", 1)[0].rstrip(">").strip()


# ---- what each kernel file instantiates, its parameter layout and shared memory ----

GEMV_ROW_GROUPS = (1, 4, 8, 16)  # int8_gemv.cu's MAXM instantiations
GEMM_TILE_ROWS = (32, 64, 128)  # int8_gemm.cu's BM instantiations
STAGED_TILE_ROWS = (32, 64)  # its BM for MODE 2 (the epilogue of a product made elsewhere)
GEMM_TILE_COLS = 128


def gemm_shared_memory(tile_rows: int, mode: int) -> int:
    """int8_gemm.cu's Tile<BM>::SMEM_BYTES, STAGES * (BM + BN) * LDS, or for MODE 2
    Tile<BM>::STAGED_BYTES: the outlier chunks' stages and the output tile."""
    if mode == 2:
        outlier = 3 * (tile_rows * (2 * 64 + 16) + GEMM_TILE_COLS * (64 + 16))
        return outlier + tile_rows * (GEMM_TILE_COLS + 8) * 4
    return 3 * (tile_rows + GEMM_TILE_COLS) * (128 + 16)


def gemm_name(dtype_name: str, aligned: bool, mode: int, tile_rows: int) -> str:
    return f"int8_gemm<{dtype_name}, {'true' if aligned else 'false'}, {mode}, {tile_rows}>"


def quantize_name(dtype_name: str, vec: bool) -> str:
    return f"quantize_rows<{dtype_name}, {'true' if vec else 'false'}>"


def _gemm_name_shared_memory(name: str) -> int:
    """gemm_shared_memory of an ``int8_gemm<T, ALIGNED, MODE, BM>`` instantiation."""
    mode, tile_rows = (int(part) for part in name.rstrip(">").split(",")[2:])
    return gemm_shared_memory(tile_rows, mode)


def gemv_name(dtype_name: str, rows: int, aligned: bool, mode: int) -> str:
    return f"int8_gemv<{dtype_name}, {rows}, {'true' if aligned else 'false'}, {mode}>"


WEIGHT_ONLY_TILES = (
    (1, 1, 1, 1), (2, 1, 1, 1), (4, 1, 1, 1), (1, 1, 1, 2), (2, 1, 1, 2), (1, 1, 2, 2),
    (1, 2, 1, 1), (2, 2, 1, 1), (2, 2, 2, 1), (2, 2, 4, 1),
)  # fmt: skip
"""weight_only_linear.cu's (ROW_TILES, TOKEN_TILES, WARP_ROWS, SPAN) instantiations: row and
token tiles of 16 weight rows and 8 tokens per warp, warps in WARP_ROWS groups of rows (the rest
split K), chunks of 64 * SPAN columns."""
WEIGHT_ONLY_TYPES = ("__half", "__nv_bfloat16")


def weight_only_name(dtype_name: str, tile: tuple[int, int, int, int], aligned: bool) -> str:
    row_tiles, token_tiles, warp_rows, span = tile
    flag = "true" if aligned else "false"
    return (
        f"weight_only_linear<{dtype_name}, {row_tiles}, {token_tiles}, {warp_rows}, {span}, {flag}>"
    )


WEIGHT_ONLY_GEMM_TILES = ((2, 2, 1, 8), (4, 2, 1, 8), (4, 4, 2, 4))
"""weight_only_gemm.cu's (MT, NT, WM, WN) instantiations: 32, 64 and 128 tokens by 128 weight
rows per block, WM x WN warps of 16 * MT tokens by 8 * NT rows."""
WEIGHT_ONLY_GEMM_SPLITS = (1, 2, 4)  # its SPLITS instantiations (more than 1: sm_90 clusters)
SPLIT_CAPABILITY = (9, 0)  # thread-block clusters
# weight_only_gemm.cu's staging: BK columns per stage, STAGES stages, rows padded by 32 elements
# (token rows of fp16 / bf16, weight rows of int8 bytes).
WEIGHT_ONLY_GEMM_K_TILE, _GEMM_STAGES = 128, 2
_GEMM_TOKEN_ROW, _GEMM_WEIGHT_ROW = 2 * (WEIGHT_ONLY_GEMM_K_TILE + 32), WEIGHT_ONLY_GEMM_K_TILE + 32


def weight_only_gemm_rows(tile: tuple[int, int, int, int]) -> tuple[int, int]:
    """The (tokens, weight rows) of a weight_only_gemm.cu block (BM, BN)."""
    mt, nt, wm, wn = tile
    return 16 * mt * wm, 8 * nt * wn


def weight_only_gemm_shared_memory(tile: tuple[int, int, int, int]) -> int:
    """weight_only_gemm.cu's GemmTile::SMEM_BYTES."""
    bm, bn = weight_only_gemm_rows(tile)
    return _GEMM_STAGES * (bm * _GEMM_TOKEN_ROW + bn * _GEMM_WEIGHT_ROW)


def weight_only_gemm_name(dtype_name: str, tile: tuple[int, int, int, int], splits: int) -> str:
    """``weight_only_gemm<T, MT, NT, WM, WN>``, or with K split
    ``weight_only_gemm_split<T, MT, NT, WM, WN, SPLITS>``."""
    tile_args = ", ".join(map(str, tile))
    if splits == 1:
        return f"weight_only_gemm<{dtype_name}, {tile_args}>"
    return f"weight_only_gemm_split<{dtype_name}, {tile_args}, {splits}>"


def _weight_only_gemm_name_shared_memory(name: str) -> int:
    """weight_only_gemm_shared_memory of a weight_only_gemm.cu instantiation."""
    mt, nt, wm, wn = (int(part) for part in name.rstrip(">").split(",")[1:5])
    return weight_only_gemm_shared_memory((mt, nt, wm, wn))


def _gemm_names() -> list[str]:
    names = [
        gemm_name(t, a, 1, bm)
        for t in C_TYPES.values()
        for a in (True, False)
        for bm in GEMM_TILE_ROWS
    ]
    raw = [gemm_name("__half", a, 0, bm) for a in (True, False) for bm in GEMM_TILE_ROWS]
    staged = [gemm_name(t, True, 2, bm) for t in C_TYPES.values() for bm in STAGED_TILE_ROWS]
    return [*names, *raw, *staged]


def _gemv_names() -> list[str]:
    names = [
        gemv_name(t, m, a, 1)
        for t in C_TYPES.values()
        for m in GEMV_ROW_GROUPS
        for a in (True, False)
    ]
    return [*names, gemv_name("__half", 16, True, 0), gemv_name("__half", 16, False, 0)]


EXPRESSIONS = {
    "quantize_rows.cu": [quantize_name(t, v) for t in C_TYPES.values() for v in (True, False)],
    "int8_gemm.cu": _gemm_names(),
    "int8_gemv.cu": _gemv_names(),
    "gather_outlier_columns.cu": [f"gather_outlier_columns<{t}>" for t in C_TYPES.values()],
    "weight_only_linear.cu": [
        weight_only_name(t, tile, a)
        for t in WEIGHT_ONLY_TYPES
        for tile in WEIGHT_ONLY_TILES
        for a in (True, False)
    ],
    "weight_only_gemm.cu": [
        weight_only_gemm_name(t, tile, splits)
        for t in WEIGHT_ONLY_TYPES
        for tile in WEIGHT_ONLY_GEMM_TILES
        for splits in WEIGHT_ONLY_GEMM_SPLITS
    ],
}
# Parameter lists, in the kernels' order (see each .cu file's signature).
LAYOUTS = {
    "quantize_rows.cu": "PPPPqiifi",  # x q absmax mask rows cols q_stride threshold mode
    # A B M N K lda ldb absmax SCB bias bias_kind X ldx mask out out_i32 ldo partials
    # tile_counters k_per_split
    "int8_gemv.cu": "PPiiiiiPPPiPiPPPiPPi",
    # A B M N K lda ldb absmax SCB bias bias_kind Xc Wc ldc outlier_count out out_i32 ldo partials
    # tile_counters k_tiles_per_split
    "int8_gemm.cu": "PPiiiiiPPPiPPiPPPiPPi",
    # mask x ldx q ldq w ldw xc wc ldc count rows_x rows_w cols
    "gather_outlier_columns.cu": "PPiPiPiPPiPiii",
    "weight_only_linear.cu": "PiPiPPiiiiPi",  # X ldx CB ldw SCB bias bias_kind M N K out ldo
    "weight_only_gemm.cu": "PiPiPPiiiiPi",  # the same
}
SHARED_MEMORY = {
    "int8_gemm.cu": _gemm_name_shared_memory,
    "weight_only_gemm.cu": _weight_only_gemm_name_shared_memory,
}
