"""Compiling and launching llmint8's CUDA kernels (``llmint8/kernels/*.cu``, the repository's
``cuda/``) through CuPy.

NVRTC compiles each kernel file once per process, GPU architecture and element type (CuPy keeps
the binaries in its on-disk cache across processes). Files that use one architecture's own
instructions (ARCH_SPECIFIC: sm_90a's wgmma) are compiled through NVRTC directly, since CuPy
names a plain ``-arch`` itself, and their binaries are cached beside CuPy's.

A launch packs its arguments with `struct` into a per-thread parameter buffer and hands it to
``cuLaunchKernel`` (CuPy's driver binding) through ``CU_LAUNCH_PARAM_BUFFER_POINTER``: one driver
call, no per-argument Python objects, on PyTorch's current stream. From sm_90 on, while a CUDA
graph is captured, the call is ``cuLaunchKernelEx`` with programmatic dependent launch
(`driver`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UnsupportedDeviceError
from .driver import DEPENDENT_LAUNCH_CAPABILITY, dependent_launch_enabled, launch_dependent

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
MIN_CAPABILITY = (7, 5)
MMA_CAPABILITY = (8, 0)  # int8 mma.sync m16n8k32
THREADS = 256  # a kernel's block, unless FILE_THREADS names another
C_TYPES = {torch.float16: "__half", torch.bfloat16: "__nv_bfloat16", torch.float32: "float"}

# cuLaunchKernel's `extra` keys (cuda.h).
_PARAM_BUFFER_POINTER, _PARAM_BUFFER_SIZE, _PARAM_END = 1, 2, 0
# CUfunction_attribute codes (cuda.h), named as CuPy's RawKernel.attributes names them.
_FUNCTION_ATTRIBUTES = {
    "max_threads_per_block": 0, "shared_size_bytes": 1, "const_size_bytes": 2,
    "local_size_bytes": 3, "num_regs": 4, "max_dynamic_shared_size_bytes": 8,
}  # fmt: skip
_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

_lock = threading.Lock()
_capabilities: dict[int, tuple[int, int]] = {}
_sm_counts: dict[int, int] = {}
_shared_memory: dict[tuple[int, str], int] = {}
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


def _shared_memory_property(index: int, name: str) -> int:
    key = (index, name)
    size = _shared_memory.get(key)
    if size is None:
        properties = cupy_module().cuda.runtime.getDeviceProperties(index)
        size = _shared_memory[key] = int(properties[name])
    return size


def shared_memory_per_sm(index: int) -> int:
    """Bytes of shared memory one SM of GPU `index` holds (CuPy's device properties: torch has
    them only from 2.6 on)."""
    return _shared_memory_property(index, "sharedMemPerMultiprocessor")


def shared_memory_per_block(index: int) -> int:
    """The most shared memory (static and dynamic) one block may use on GPU `index` once it
    opts in (99 KB on sm_86 / sm_89, 163 KB on sm_80, 227 KB on sm_90)."""
    return _shared_memory_property(index, "sharedMemPerBlockOptin")


def current_stream(index: int) -> int:
    """PyTorch's current stream on GPU `index`, as a raw pointer (read on every call: graph
    capture and user code switch streams)."""
    return torch._C._cuda_getCurrentRawStream(index)


class Kernel:
    """One compiled kernel and the `struct` layout of its parameters (native alignment, the
    layout the CUDA ABI gives kernel parameters: pointers ``P``, int ``i``, long long ``q``,
    float ``f``, and ``128s`` for a 128-byte TMA tensor map, first in the list so that it lies
    64-byte aligned)."""

    def __init__(self, function: Any, index: int, layout: str, threads: int = THREADS) -> None:
        self.function = function  # keeps the module loaded
        # The CUfunction: a RawModule's function (CuPy compiles lazily here) or a loaded module's.
        self.pointer = function.kernel.ptr if hasattr(function, "kernel") else function.ptr
        self.index = index
        self.layout = struct.Struct("@" + layout)
        # Over-aligned parameters (tensor maps) go through cuLaunchKernel's kernelParams, one
        # pointer per parameter: the driver misreads them from a packed parameter buffer.
        self.offsets = parameter_offsets(layout) if "s" in layout else None
        self.threads = threads
        self.dependent = check_device(index) >= DEPENDENT_LAUNCH_CAPABILITY
        self._local = threading.local()

    @functools.cached_property
    def attributes(self) -> dict:
        """The driver's attributes of the kernel (``num_regs``, ...), queried once with its
        GPU's context current (a thread that has not used the GPU yet has none)."""
        cupy = cupy_module()
        with cupy.cuda.Device(self.index):
            if hasattr(self.function, "attributes"):
                return self.function.attributes
            get = cupy.cuda.driver.funcGetAttribute
            return {name: get(code, self.pointer) for name, code in _FUNCTION_ATTRIBUTES.items()}

    def _buffers(self) -> tuple[np.ndarray, int, int]:
        """This thread's parameter buffer and cuLaunchKernel's (kernelParams, extra) for it."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            params = np.zeros((self.layout.size + 7) // 8, dtype=np.uint64)
            if self.offsets is not None:
                pointers = np.array([params.ctypes.data + o for o in self.offsets], np.uint64)
                keep, kernel_params, extra = pointers, pointers.ctypes.data, 0
            else:
                size = np.array([self.layout.size], dtype=np.uint64)
                keep = np.array(
                    [_PARAM_BUFFER_POINTER, params.ctypes.data, _PARAM_BUFFER_SIZE,
                     size.ctypes.data, _PARAM_END],
                    dtype=np.uint64,
                )  # fmt: skip
                keep = (keep, size)
                kernel_params, extra = 0, keep[0].ctypes.data
            self._local.keep = keep  # the arrays the pointers point into
            buffers = self._local.buffers = (params, kernel_params, extra)
        return buffers

    def launch(self, grid: tuple[int, int, int], shared_mem: int, *args, dependent=True) -> None:
        """Launches on PyTorch's current stream of this kernel's GPU (`dependent`: as
        `launch_packed`)."""
        params, kernel_params, extra = self._buffers()
        self.layout.pack_into(params, 0, *args)
        self.launch_packed(grid, shared_mem, kernel_params, extra, dependent=dependent)

    def launch_packed(
        self,
        grid: tuple[int, int, int],
        shared_mem: int,
        kernel_params: int,
        extra: int,
        stream: int | None = None,
        dependent: bool = True,
    ) -> None:
        """Launches with parameters packed already (cuLaunchKernel's kernelParams or extra) on
        `stream` (PyTorch's current stream of this kernel's GPU when None). While a CUDA graph is
        captured, from sm_90 on and with `dependent`, as a programmatic dependent of the kernel
        before it (`driver.launch_dependent`): replays gained 1-4 us per LLM.int8() forward,
        where eager forwards (the launch paid on every call) measured 10-15 us slower
        (benches/NOTES.md v16)."""
        if stream is None:
            stream = current_stream(self.index)
        cupy = cupy_module()
        if cupy.cuda.runtime.getDevice() != self.index:
            with cupy.cuda.Device(self.index):
                self.launch_packed(grid, shared_mem, kernel_params, extra, stream, dependent)
            return
        if not getattr(_context_bound, "done", False):
            _bind_context(cupy)
        if dependent and self.dependent and launches_dependent():
            launch_dependent(
                self.pointer, grid, self.threads, shared_mem, stream, kernel_params, extra
            )  # fmt: skip
        else:
            cupy.cuda.driver.launchKernel(
                self.pointer, grid[0], grid[1], grid[2], self.threads, 1, 1, shared_mem, stream,
                kernel_params, extra,
            )  # fmt: skip


_capturing = torch.cuda.is_current_stream_capturing
_context_bound = threading.local()


def launches_dependent() -> bool:
    """Whether a launch made now (by a kernel that can) goes as a programmatic dependent of the
    kernel before it: dependent launch on, and a CUDA graph being captured."""
    return dependent_launch_enabled() and _capturing()


def _bind_context(cupy) -> None:
    """Makes the current device's primary context current in this thread if none is: a thread
    whose first CUDA work is a driver-API launch (on the device the runtime reports current, as
    every new thread starts) has no current context until a runtime call binds one, which
    cudaSetDevice does."""
    if not cupy.cuda.driver.ctxGetCurrent():
        cupy.cuda.runtime.setDevice(cupy.cuda.runtime.getDevice())
    _context_bound.done = True


def parameter_offsets(layout: str) -> list[int]:
    """The byte offset of each parameter of a `struct` layout (native alignment)."""
    offsets, prefix = [], "@"
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", layout):
        offsets.append(struct.calcsize(prefix + count + code) - struct.calcsize("@" + count + code))
        prefix += count + code
    return offsets


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
    threads = FILE_THREADS.get(file, THREADS)
    with cupy.cuda.Device(index):
        if file in ARCH_SPECIFIC:
            module, functions = _compile_arch_specific(index, file, names)
        else:
            module = cupy.RawModule(
                code=(KERNEL_DIR / file).read_text(),
                options=("--std=c++17", f"-I{KERNEL_DIR}"),
                name_expressions=names,
            )
            functions = {name: module.get_function(name) for name in names}
        kernels = {}
        for name, function in functions.items():
            if SHARED_MEMORY.get(file):
                # What this GPU allows at most: the plans never launch an instantiation needing
                # more (`cuda.weight_only_tile_fits`), and one that does not fit must not fail
                # the group's compilation.
                if hasattr(function, "attributes"):  # a RawKernel (sets up this thread's context)
                    static = function.attributes["shared_size_bytes"]
                else:
                    code = _FUNCTION_ATTRIBUTES["shared_size_bytes"]
                    static = cupy.cuda.driver.funcGetAttribute(code, function.ptr)
                size = min(SHARED_MEMORY[file](name), shared_memory_per_block(index) - static)
                if hasattr(function, "max_dynamic_shared_size_bytes"):
                    function.max_dynamic_shared_size_bytes = size
                else:
                    cupy.cuda.driver.funcSetAttribute(
                        function.ptr, _MAX_DYNAMIC_SHARED_SIZE_BYTES, size
                    )
            layout = KERNEL_LAYOUTS.get(name.split("<")[0], LAYOUTS[file])
            width = EXPRESSION_THREADS.get(name, threads)
            kernels[(index, file, name)] = Kernel(function, index, layout, width)
    _modules[(index, file, group)] = module
    _kernels.update(kernels)


def _compile_arch_specific(index: int, file: str, names: list[str]):
    """`file`'s instantiations `names`, compiled for the architecture-specific target of
    ARCH_SPECIFIC[file] (GPU `index` must be that architecture) and loaded: (module, {name:
    function})."""
    required = ARCH_SPECIFIC[file]
    capability = check_device(index)
    if capability != required:
        raise UnsupportedDeviceError(
            f"{file} runs on sm_{required[0]}{required[1]} only; GPU {index} is "
            f"sm_{capability[0]}{capability[1]}"
        )
    binary, lowered = arch_specific_binary(file, names)
    module = cupy_module().cuda.function.Module()
    module.load(binary)
    return module, {name: module.get_function(lowered[name]) for name in names}


def arch_specific_binary(file: str, names: list[str]) -> tuple[bytes, dict[str, str]]:
    """The cubin of `file`'s instantiations `names` for ARCH_SPECIFIC[file]'s
    architecture-specific target (``sm_90a``) and their lowered names, through NVRTC (no GPU
    needed). Cached on disk under CuPy's cache directory, keyed by the sources, the options,
    NVRTC's version and the names; a cache that cannot be written is skipped."""
    from cupy._core.core import assemble_cupy_compiler_options
    from cupy_backends.cuda.libs import nvrtc

    major, minor = ARCH_SPECIFIC[file]
    source = (KERNEL_DIR / file).read_text()
    headers = sorted((p.name, p.read_text()) for p in KERNEL_DIR.glob("*.cuh"))
    arch = f"-arch=sm_{major}{minor}a"
    options = (*assemble_cupy_compiler_options(("--std=c++17", f"-I{KERNEL_DIR}")), arch)
    options = (*options, "--device-as-default-execution-space", "-ftz=true")
    identity = repr((source, headers, options, nvrtc.getVersion(), names)).encode()
    cache = Path(os.environ.get("CUPY_CACHE_DIR", Path.home() / ".cupy" / "kernel_cache"))
    stem = cache / "llmint8" / hashlib.sha256(identity).hexdigest()
    try:
        return stem.with_suffix(".cubin").read_bytes(), json.loads(
            stem.with_suffix(".json").read_text()
        )
    except (OSError, ValueError):
        pass
    program = nvrtc.createProgram(source, file, [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(program, name)
        try:
            nvrtc.compileProgram(program, list(options))
        except nvrtc.NVRTCError:
            log = nvrtc.getProgramLog(program)
            raise RuntimeError(f"NVRTC failed to compile {file} ({arch}):\n{log}") from None
        binary = nvrtc.getCUBIN(program)
        lowered = {name: nvrtc.getLoweredName(program, name) for name in names}
    finally:
        nvrtc.destroyProgram(program)
    _write_atomically(stem.with_suffix(".cubin"), binary)
    _write_atomically(stem.with_suffix(".json"), json.dumps(lowered).encode())
    return binary, lowered


def _write_atomically(path: Path, data: bytes) -> None:
    """`data` as `path`, complete or not at all (a cache that cannot be written is skipped)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except OSError:
            os.unlink(temporary)
            raise
    except OSError:
        pass


def precompile(index: int = 0) -> int:
    """Compiles every kernel llmint8 has for GPU `index` now rather than at first use, the
    (file, element type) groups in parallel threads (NVRTC runs without the GIL); for a server's
    start-up or before capturing CUDA graphs. CuPy's on-disk cache makes later processes fast
    either way. Returns the number of kernels ready."""
    from concurrent.futures import ThreadPoolExecutor

    capability = check_device(index)
    firsts = {}
    for file, names in EXPRESSIONS.items():
        if ARCH_SPECIFIC.get(file, capability) != capability:
            continue  # another architecture's kernels
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


# quantize_rows.cu's blocks (one per row): wide ones where few rows leave SMs idle.
QUANTIZE_THREADS = (256, 512, 1024)


def quantize_name(dtype_name: str, vec: bool, threads: int = THREADS) -> str:
    return f"quantize_rows<{dtype_name}, {'true' if vec else 'false'}, {threads}>"


def quantize_threads(rows: int, cols: int, vector_width: int, sms: int) -> int:
    """quantize_rows.cu's block for `rows` rows of `cols` columns read `vector_width` at a time:
    256 threads once the rows alone fill every SM twice, else the narrowest block that gives
    each thread one vector of the row (at most 1024). On the H200 128 rows of 11008 fp16 with
    outliers take 4.9 us with 1024 threads against 6.1 with 256 (benches/NOTES.md v26); from
    512 rows on wide blocks measured slower (10.0 against 13.1 us at 512 rows of 8192)."""
    if rows >= 2 * sms:
        return THREADS
    vectors = -(-cols // vector_width)
    return next((t for t in QUANTIZE_THREADS if t >= vectors), QUANTIZE_THREADS[-1])


def _gemm_name_shared_memory(name: str) -> int:
    """gemm_shared_memory of an ``int8_gemm<T, ALIGNED, MODE, BM>`` instantiation."""
    mode, tile_rows = (int(part) for part in name.rstrip(">").split(",")[2:])
    return gemm_shared_memory(tile_rows, mode)


def gemv_name(dtype_name: str, rows: int, aligned: bool, mode: int) -> str:
    return f"int8_gemv<{dtype_name}, {rows}, {'true' if aligned else 'false'}, {mode}>"


WEIGHT_ONLY_TILES = (
    (1, 1, 1, 1, 0), (2, 1, 1, 1, 0), (4, 1, 1, 1, 0), (1, 1, 1, 2, 0), (2, 1, 1, 2, 0),
    (1, 1, 2, 2, 0), (1, 2, 1, 1, 0), (2, 2, 1, 1, 0), (2, 2, 2, 1, 0), (2, 2, 4, 1, 0),
    (1, 1, 1, 1, 4), (2, 2, 1, 1, 4), (1, 2, 1, 1, 4), (2, 2, 1, 1, 0, 16), (2, 2, 1, 1, 2, 16),
)  # fmt: skip
"""weight_only_linear.cu's (ROW_TILES, TOKEN_TILES, WARP_ROWS, SPAN, STAGES[, WARPS])
instantiations: row and token tiles of 16 weight rows and 8 tokens per warp, warps in WARP_ROWS
groups of rows (the rest split K), chunks of 64 * SPAN columns, with STAGES = 0 two chunks per
warp in registers, else a STAGES-deep ring of chunks per warp in shared memory (aligned operands
only: unaligned ones run its register twin, `weight_only_register_twin`); blocks of WARPS warps,
8 unless a sixth field says otherwise."""
WEIGHT_ONLY_RING_TILES = {1: (1, 1, 1, 1, 4), 2: (2, 2, 1, 1, 4)}
"""The ring tile weight_only_tiles takes for one and two token tiles where its blocks fit one
wave (benches/weight-only-h200.md)."""
WEIGHT_ONLY_NARROW_RING_TILES = {2: (1, 2, 1, 1, 4)}
"""The ring tile weight_only_tiles takes before WEIGHT_ONLY_RING_TILES' for two token tiles where
its blocks fit one per SM: weights of up to 16 rows per SM (2048 on 132 SMs), where the wider
tile's blocks would leave half the SMs idle (benches/NOTES.md v52: 4096×2048 at 16 rows 8.2 ->
6.5 µs; on 4096 rows, two blocks per SM, it measured slower than the wider tile)."""
WEIGHT_ONLY_LONG_RING_TILES = {2: (2, 2, 1, 1, 2, 16)}
WEIGHT_ONLY_LONG_K = 8192
"""The ring tile weight_only_tiles takes in WEIGHT_ONLY_RING_TILES' place for two token tiles
where K has WEIGHT_ONLY_LONG_K columns or more: the same 32-row blocks with 16 warps, each warp a
chain of half as many chunks (benches/NOTES.md v53: 11008×4096 at 16 rows 18.1 -> 16.7 µs with
the weight cold; on 4096 columns, 4 chunks per warp, it measured no faster)."""
WEIGHT_ONLY_TYPES = ("__half", "__nv_bfloat16")


def weight_only_warps(tile: tuple[int, ...]) -> int:
    """The warps of a weight_only_linear.cu tile's block: its sixth field, else 8."""
    return tile[5] if len(tile) > 5 else THREADS // 32


def weight_only_name(dtype_name: str, tile: tuple[int, ...], aligned: bool) -> str:
    row_tiles, token_tiles, warp_rows, span, stages = tile[:5]
    flag = "true" if aligned else "false"
    warps = f", {tile[5]}" if len(tile) > 5 else ""
    return (
        f"weight_only_linear<{dtype_name}, {row_tiles}, {token_tiles}, {warp_rows}, {span}, "
        f"{flag}, {stages}{warps}>"
    )


def weight_only_register_twin(tile: tuple[int, ...]) -> tuple[int, ...]:
    """The register-pipeline tile that runs a ring tile's products in its order (the same
    bits): its rows, span and warps, no ring. Unaligned operands run it in the ring tile's
    place."""
    return (*tile[:4], 0, *tile[5:])


def weight_only_shared_memory(tile: tuple[int, ...]) -> int:
    """Dynamic shared memory of a weight_only_linear.cu tile: its ring of STAGES chunks per
    warp, 16 bytes per lane and piece (two weight rows and two pieces per token tile per span)."""
    row_tiles, token_tiles, _, span, stages = tile[:5]
    pieces = 2 * row_tiles * span + 2 * token_tiles * span
    return weight_only_warps(tile) * stages * pieces * 32 * 16


def _weight_only_name_shared_memory(name: str) -> int:
    return weight_only_shared_memory(
        tuple(int(part) for i, part in enumerate(name.rstrip(">").split(",")[1:]) if i != 4)
    )


WEIGHT_ONLY_TMA_TILES = (
    (1, 2, 2, 1), (1, 2, 4, 1), (2, 2, 2, 1), (2, 2, 3, 1), (2, 2, 4, 1), (4, 2, 2, 1),
    (2, 4, 2, 1), (2, 2, 2, 2), (2, 4, 2, 2),
)  # fmt: skip
"""weight_only_tma.cu's (ROW_TILES, TOKEN_TILES, STAGES, SPLITS) instantiations (sm_90a): 16 *
ROW_TILES weight rows by 8 * TOKEN_TILES tokens per block, a ring of STAGES chunks of the
activations per warp, K split across a cluster of SPLITS blocks. benches/NOTES.md v34 measured a
dozen more (64-token tiles, 64-row tiles of 32 tokens, splits of 4, one-row-tile splits): none
the best anywhere."""


def weight_only_tma_name(dtype_name: str, tile: tuple[int, int, int, int]) -> str:
    """``weight_only_tma<T, ROW_TILES, TOKEN_TILES, STAGES>``, or with K split
    ``weight_only_tma_split<T, ROW_TILES, TOKEN_TILES, STAGES, SPLITS>``."""
    *shape, splits = tile
    args = ", ".join(map(str, shape))
    if splits == 1:
        return f"weight_only_tma<{dtype_name}, {args}>"
    return f"weight_only_tma_split<{dtype_name}, {args}, {splits}>"


def weight_only_tma_shared_memory(tile: tuple[int, int, int, int]) -> int:
    """weight_only_tma.cu's dynamic shared memory: 8 warps' rings of STAGES chunks of 8 *
    TOKEN_TILES token rows of 128 bytes, reused after the K loop for the warps' fp32 sums (rows
    padded by one) and, with K split, the block's; plus the alignment to 1024 bytes."""
    row_tiles, token_tiles, stages, splits = tile
    warps, tokens, rows = THREADS // 32, 8 * token_tiles, 16 * row_tiles
    ring = warps * stages * tokens * 128
    sums = 4 * (warps * tokens * (rows + 1) + (tokens * rows if splits > 1 else 0))
    return max(ring, sums) + 1024


def _weight_only_tma_name_shared_memory(name: str) -> int:
    fields = [int(f) for f in name[name.index("<") + 1 : -1].split(",")[1:]]
    return weight_only_tma_shared_memory((*fields[:3], fields[3] if len(fields) > 3 else 1))


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


WGMMA_CAPABILITY = (9, 0)  # weight_only_wgmma.cu: wgmma, compiled for sm_90a
WGMMA_TOKEN_TILES = ((32, 8), (64, 6), (128, 4))
"""weight_only_wgmma.cu's (NTOK, STAGES) instantiations: tokens per block (by 128 weight rows)
and the depth of its ring of K tiles."""
WGMMA_SPLITS = (1, 2, 4)  # its SPLITS instantiations (a cluster of blocks along K)
# A plan's splits value naming its stream-K kernel (weight_only_wgmma_streamk: one block per SM,
# the tiles' K tiles divided evenly between them).
WGMMA_STREAM_K = 0
# ... and its stream-K kernel over wide tiles of WGMMA_WIDE_TILE_ROWS weight rows
# (weight_only_wgmma_streamk_wide: each K tile of the activations read once per 256 weight rows),
# for the token tiles and stages of WGMMA_WIDE_TOKEN_TILES.
WGMMA_STREAM_K_WIDE = -1
WGMMA_WIDE_TOKEN_TILES = ((32, 5), (64, 4))
WGMMA_K_TILE, WGMMA_WEIGHT_ROWS, WGMMA_WIDE_TILE_ROWS, WGMMA_THREADS = 128, 128, 256, 384


def weight_only_wgmma_shared_memory(tokens: int, stages: int, rows: int = WGMMA_WEIGHT_ROWS) -> int:
    """weight_only_wgmma.cu's WgmmaTile<NTOK, STAGES, rows / 128>::SMEM_BYTES: stages of X and
    weight tiles, each rounded up to 1024 bytes, and 1024 bytes to align the ring."""
    stage = _ceil((tokens * 2 + rows) * WGMMA_K_TILE, 1024) * 1024
    return stages * stage + 1024


def weight_only_wgmma_tile(tokens: int, splits: int) -> tuple[int, int]:
    """(stages, weight rows) of weight_only_wgmma.cu's plan (tokens, splits)."""
    if splits == WGMMA_STREAM_K_WIDE:
        return dict(WGMMA_WIDE_TOKEN_TILES)[tokens], WGMMA_WIDE_TILE_ROWS
    return dict(WGMMA_TOKEN_TILES)[tokens], WGMMA_WEIGHT_ROWS


def weight_only_wgmma_name(dtype_name: str, tokens: int, splits: int) -> str:
    """``weight_only_wgmma<T, NTOK, STAGES>``, with K split
    ``weight_only_wgmma_split<T, NTOK, STAGES, SPLITS>``, stream-K (`WGMMA_STREAM_K`)
    ``weight_only_wgmma_streamk<T, NTOK, STAGES>``, over wide tiles (`WGMMA_STREAM_K_WIDE`)
    ``weight_only_wgmma_streamk_wide<T, NTOK, STAGES>``."""
    stages, _ = weight_only_wgmma_tile(tokens, splits)
    if splits == WGMMA_STREAM_K_WIDE:
        return f"weight_only_wgmma_streamk_wide<{dtype_name}, {tokens}, {stages}>"
    if splits == WGMMA_STREAM_K:
        return f"weight_only_wgmma_streamk<{dtype_name}, {tokens}, {stages}>"
    if splits == 1:
        return f"weight_only_wgmma<{dtype_name}, {tokens}, {stages}>"
    return f"weight_only_wgmma_split<{dtype_name}, {tokens}, {stages}, {splits}>"


def _weight_only_wgmma_name_shared_memory(name: str) -> int:
    tokens, stages = (int(part) for part in name.rstrip(">").split(",")[1:3])
    rows = WGMMA_WIDE_TILE_ROWS if "_wide<" in name else WGMMA_WEIGHT_ROWS
    return weight_only_wgmma_shared_memory(tokens, stages, rows)


INT8_WGMMA_TOKEN_TILES = ((32, 10), (64, 8), (128, 6))
"""int8_wgmma.cu's (NTOK, STAGES) instantiations (its SPLITS: WGMMA_SPLITS)."""
INT8_WGMMA_PAIR_TILE = (256, 4)
"""int8_wgmma.cu's (NTOK, STAGES) of ``int8_wgmma_pair``: K unsplit, blocks in pairs along grid y
(clusters of two weight tiles) that share the tokens' box."""
OUTLIER_CHUNK = 64  # common.cuh: the gathered outlier columns come in whole chunks


INT8_WGMMA_DENSE_TILES = (32, 64)
"""int8_wgmma.cu's token tiles with the dense outlier part (Int8Tile<NTOK, STAGES>::DENSE); the
128-token tiles gather the outlier columns always."""


def int8_wgmma_shared_memory(tokens: int, stages: int) -> int:
    """int8_wgmma.cu's Int8Tile<NTOK, STAGES>::SMEM_BYTES: stages of int8 X and weight tiles
    (128 bytes of K per row), 1024 bytes to align the ring, and for the 256-token tile the A tile
    of its first outlier chunk (the weight rows by OUTLIER_CHUNK fp16 / bf16 values)."""
    a_tile = WGMMA_WEIGHT_ROWS * 2 * OUTLIER_CHUNK if tokens == INT8_WGMMA_PAIR_TILE[0] else 0
    return stages * (tokens + WGMMA_WEIGHT_ROWS) * WGMMA_K_TILE + a_tile + 1024


def int8_wgmma_name(dtype_name: str, tokens: int, splits: int) -> str:
    """``int8_wgmma<T, NTOK, STAGES>``, with K split ``int8_wgmma_split<T, NTOK, STAGES,
    SPLITS>``."""
    if tokens == INT8_WGMMA_PAIR_TILE[0]:
        if splits != 1:
            raise ValueError(f"int8_wgmma.cu's {tokens}-token tile does not split K")
        return f"int8_wgmma_pair<{dtype_name}, {tokens}, {INT8_WGMMA_PAIR_TILE[1]}>"
    stages = dict(INT8_WGMMA_TOKEN_TILES)[tokens]
    if splits == 1:
        return f"int8_wgmma<{dtype_name}, {tokens}, {stages}>"
    return f"int8_wgmma_split<{dtype_name}, {tokens}, {stages}, {splits}>"


def _int8_wgmma_name_shared_memory(name: str) -> int:
    tokens, stages = (int(part) for part in name.rstrip(">").split(",")[1:3])
    return int8_wgmma_shared_memory(tokens, stages)


INT8_TOKENS_TILES = ((96, 1, 10), (96, 2, 7), (128, 1, 8), (128, 2, 6), (224, 1, 5), (224, 2, 4))
"""int8_wgmma_tokens.cu's (BN, CONSUMERS, STAGES) instantiations: weight rows per block, consumer
warpgroups of 64 tokens each and the depth of its ring (its SPLITS: WGMMA_SPLITS)."""


INT8_TOKENS_DENSE_TILES = ((96, 1), (128, 1), (96, 2))
"""int8_wgmma_tokens.cu's (BN, CONSUMERS) tiles with the dense outlier part
(TokensTile<BN, CONSUMERS, STAGES>::DENSE: the int32 and fp32 sums fit a consumer's registers);
the others list and stage the outlier columns always."""


def int8_tokens_shared_memory(rows: int, consumers: int, stages: int) -> int:
    """int8_wgmma_tokens.cu's TokensTile<BN, CONSUMERS, STAGES>::SMEM_BYTES: stages of int8
    tokens and weight rows (128 bytes of K each), the staging area of an outlier chunk (a row of
    64 halves per token and weight row: one stage's bytes) and 1024 bytes to align the ring."""
    stage = (64 * consumers + rows) * WGMMA_K_TILE
    return (stages + 1) * stage + 1024


def int8_tokens_threads(consumers: int) -> int:
    """int8_wgmma_tokens.cu's block: the producer warpgroup and the consumers."""
    return 128 * (1 + consumers)


def int8_tokens_name(dtype_name: str, rows: int, consumers: int, splits: int) -> str:
    """``int8_wgmma_tokens<T, BN, CONSUMERS, STAGES>``, with K split
    ``int8_wgmma_tokens_split<T, BN, CONSUMERS, STAGES, SPLITS>``."""
    stages = {(r, c): s for r, c, s in INT8_TOKENS_TILES}[(rows, consumers)]
    tile = f"{dtype_name}, {rows}, {consumers}, {stages}"
    if splits == 1:
        return f"int8_wgmma_tokens<{tile}>"
    return f"int8_wgmma_tokens_split<{tile}, {splits}>"


def _int8_tokens_names() -> dict[str, int]:
    """int8_wgmma_tokens.cu's instantiations and the block each launches with."""
    return {
        int8_tokens_name(t, rows, consumers, splits): int8_tokens_threads(consumers)
        for t in WEIGHT_ONLY_TYPES
        for rows, consumers, _ in INT8_TOKENS_TILES
        for splits in WGMMA_SPLITS
    }


def _int8_tokens_name_shared_memory(name: str) -> int:
    rows, consumers, stages = (int(part) for part in name.rstrip(">").split(",")[1:4])
    return int8_tokens_shared_memory(rows, consumers, stages)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


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


def _quantize_names() -> dict[str, int]:
    """quantize_rows.cu's instantiations and the block each launches with."""
    return {
        quantize_name(t, v, n): n
        for t in C_TYPES.values()
        for v in (True, False)
        for n in QUANTIZE_THREADS
    }


EXPRESSIONS = {
    "quantize_rows.cu": list(_quantize_names()),
    "int8_gemm.cu": _gemm_names(),
    "int8_gemv.cu": _gemv_names(),
    "gather_outlier_columns.cu": [f"gather_outlier_columns<{t}>" for t in C_TYPES.values()],
    "weight_only_linear.cu": [
        weight_only_name(t, tile, a)
        for t in WEIGHT_ONLY_TYPES
        for tile in WEIGHT_ONLY_TILES
        for a in ((True, False) if tile[4] == 0 else (True,))
    ],
    "weight_only_tma.cu": [
        weight_only_tma_name(t, tile) for t in WEIGHT_ONLY_TYPES for tile in WEIGHT_ONLY_TMA_TILES
    ],
    "weight_only_gemm.cu": [
        weight_only_gemm_name(t, tile, splits)
        for t in WEIGHT_ONLY_TYPES
        for tile in WEIGHT_ONLY_GEMM_TILES
        for splits in WEIGHT_ONLY_GEMM_SPLITS
    ],
    "weight_only_wgmma.cu": [
        weight_only_wgmma_name(t, tokens, splits)
        for t in WEIGHT_ONLY_TYPES
        for tokens, _ in WGMMA_TOKEN_TILES
        for splits in (*WGMMA_SPLITS, WGMMA_STREAM_K)
    ]
    + [
        weight_only_wgmma_name(t, tokens, WGMMA_STREAM_K_WIDE)
        for t in WEIGHT_ONLY_TYPES
        for tokens, _ in WGMMA_WIDE_TOKEN_TILES
    ],
    "int8_wgmma.cu": [
        int8_wgmma_name(t, tokens, splits)
        for t in WEIGHT_ONLY_TYPES
        for tokens, _ in INT8_WGMMA_TOKEN_TILES
        for splits in WGMMA_SPLITS
    ]
    + [int8_wgmma_name(t, INT8_WGMMA_PAIR_TILE[0], 1) for t in WEIGHT_ONLY_TYPES],
    "int8_wgmma_tokens.cu": list(_int8_tokens_names()),
}
# Files compiled for one architecture's specific target alone, and the blocks not of THREADS.
ARCH_SPECIFIC = {
    "weight_only_wgmma.cu": WGMMA_CAPABILITY,
    "int8_wgmma.cu": WGMMA_CAPABILITY,
    "weight_only_tma.cu": WGMMA_CAPABILITY,
    "int8_wgmma_tokens.cu": WGMMA_CAPABILITY,
}
FILE_THREADS = {"weight_only_wgmma.cu": WGMMA_THREADS, "int8_wgmma.cu": WGMMA_THREADS}
# Instantiations whose block is a template parameter of their own.
EXPRESSION_THREADS = {
    **_quantize_names(),
    **_int8_tokens_names(),
    **{
        weight_only_name(t, tile, aligned): 32 * weight_only_warps(tile)
        for t in WEIGHT_ONLY_TYPES
        for tile in WEIGHT_ONLY_TILES
        for aligned in (True, False)
        if weight_only_warps(tile) != THREADS // 32
    },
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
    # mask x ldx q ldq w ldw xc wc ldc count rows_x rows_w cols columns clear hot_tiles
    # hand_over_above
    "gather_outlier_columns.cu": "PPiPiPiPPiPiiiPiPi",
    "weight_only_linear.cu": "PiPiPPiiiiPi",  # X ldx CB ldw SCB bias bias_kind M N K out ldo
    "weight_only_gemm.cu": "PiPiPPiiiiPi",  # the same
    "weight_only_tma.cu": "128sPiPPiiiiPi",  # x_map CB ldw SCB bias bias_kind M N K out ldo
    # x_map w_map (TMA tensor maps, 128 bytes each) SCB bias bias_kind M N K out ldo gate_count
    # gate_above
    "weight_only_wgmma.cu": "128s128sPPiiiiPiPi",
    # x_map w_map xo_map absmax SCB bias bias_kind Xc ldc W ldw columns outlier_count M N K out
    # ldo spent_mask spent_words early_weights hot_tiles weight_only_above
    "int8_wgmma.cu": "128s128s128sPPPiPiPiPPiiiPiPiiPi",
    "int8_wgmma_tokens.cu": "128s128s128sPPPiPiPiPPiiiPiPiiPi",  # int8_wgmma.cu's
}
# Kernels whose parameters differ from their file's: by the kernel's name.
KERNEL_LAYOUTS = {
    # ... out ldo gate_count gate_above, then the stream-K workspace: partial tiles, tile counters
    "weight_only_wgmma_streamk": LAYOUTS["weight_only_wgmma.cu"] + "PP",
    "weight_only_wgmma_streamk_wide": LAYOUTS["weight_only_wgmma.cu"] + "PP",
}
SHARED_MEMORY = {
    "weight_only_linear.cu": _weight_only_name_shared_memory,
    "int8_gemm.cu": _gemm_name_shared_memory,
    "weight_only_gemm.cu": _weight_only_gemm_name_shared_memory,
    "weight_only_tma.cu": _weight_only_tma_name_shared_memory,
    "weight_only_wgmma.cu": _weight_only_wgmma_name_shared_memory,
    "int8_wgmma.cu": _int8_wgmma_name_shared_memory,
    "int8_wgmma_tokens.cu": _int8_tokens_name_shared_memory,
}
