"""CUDA driver functions that neither PyTorch nor CuPy binds, called through ctypes: the tensor
map encoders (`tensor_maps`) and ``cuLaunchKernelEx`` for programmatic dependent launch.

Programmatic dependent launch (sm_90+): a kernel launched with the attribute
``CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`` may start while the kernel before it on
the stream still runs, once every block of that kernel has executed
``griddepcontrol.launch_dependents`` (or exited). Every llmint8 kernel executes it first and
``griddepcontrol.wait`` before it reads what an earlier kernel writes or writes anything
(``cuda/common.cuh``), so its launch and set-up overlap the end of the kernel before: consecutive
layers, and the quantize, gather and product kernels of one LLM.int8() forward. `cuda_kernels`
launches this way while a CUDA graph is captured (graphs record the dependency as a programmatic
edge; replays measured faster), not in eager calls (measured slower). Set the environment
variable ``LLMINT8_DEPENDENT_LAUNCH=0`` (or call `set_dependent_launch(False)`) to launch every
kernel in plain stream order.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading

import numpy as np

from ..errors import UnsupportedDeviceError

DEPENDENT_LAUNCH_CAPABILITY = (9, 0)
# CUlaunchAttributeID (cuda.h) and the CUlaunchConfig / CUlaunchAttribute layouts: the grid and
# block sizes, dynamic shared memory, stream, attribute array and count; an attribute's id and its
# 64-byte value union (here the int programmaticStreamSerializationAllowed).
_PROGRAMMATIC_STREAM_SERIALIZATION = 6
_CONFIG = struct.Struct("@7I4xQQI4x")
_ATTRIBUTE = struct.Struct("@I4xi60x")

_lock = threading.Lock()
_functions: dict[str, ctypes._CFuncPtr] = {}
_local = threading.local()


_dependent_launch = os.environ.get("LLMINT8_DEPENDENT_LAUNCH", "1") != "0"


def dependent_launch_enabled() -> bool:
    """Whether kernels on sm_90+ launch as programmatic dependents (LLMINT8_DEPENDENT_LAUNCH,
    default on; `set_dependent_launch`)."""
    return _dependent_launch


def set_dependent_launch(enabled: bool) -> bool:
    """Turns programmatic dependent launch on or off for the launches that follow (benches and
    tests compare both); returns the previous setting."""
    global _dependent_launch
    previous, _dependent_launch = _dependent_launch, bool(enabled)
    return previous


def driver_function(name: str, argtypes: list) -> ctypes._CFuncPtr:
    """The CUDA driver's function `name` (returning a CUresult), loaded once."""
    found = _functions.get(name)
    if found is None:
        with _lock:
            try:
                found = getattr(ctypes.CDLL("libcuda.so.1"), name)
            except (OSError, AttributeError) as err:
                raise UnsupportedDeviceError(
                    f"the CUDA driver has no {name} (CUDA 12+ drivers): {err}"
                ) from None
            found.argtypes, found.restype = argtypes, ctypes.c_int
            _functions[name] = found
    return found


def _config() -> tuple[np.ndarray, int]:
    """This thread's CUlaunchConfig buffer (its attribute array beside it) and its address."""
    found = getattr(_local, "config", None)
    if found is None:
        buffer = np.zeros(_CONFIG.size + _ATTRIBUTE.size, dtype=np.uint8)
        _ATTRIBUTE.pack_into(buffer, _CONFIG.size, _PROGRAMMATIC_STREAM_SERIALIZATION, 1)
        found = _local.config = (buffer, buffer.ctypes.data)
    return found


def launch_dependent(
    function: int,
    grid: tuple[int, int, int],
    threads: int,
    shared_mem: int,
    stream: int,
    kernel_params: int,
    extra: int,
) -> None:
    """``cuLaunchKernelEx`` of the CUfunction `function` on `stream` as a programmatic dependent
    of the kernel before it (the arguments as cuLaunchKernel takes them); raises CuPy's
    CUDADriverError as its launches do."""
    launch = _functions.get("cuLaunchKernelEx")
    if launch is None:
        launch = driver_function("cuLaunchKernelEx", [ctypes.c_void_p] * 4)
    buffer, address = _config()
    _CONFIG.pack_into(
        buffer, 0, grid[0], grid[1], grid[2], threads, 1, 1, shared_mem, stream,
        address + _CONFIG.size, 1,
    )  # fmt: skip
    status = launch(address, function, kernel_params or None, extra or None)
    if status != 0:
        from cupy_backends.cuda.api.driver import check_status

        check_status(status)


# cuStreamGetCaptureInfo's versions (newest first): all begin (stream, status *, id *); the later
# ones add optional outputs, passed as null here (extra null arguments are harmless to the older).
_CAPTURE_INFO = ("cuStreamGetCaptureInfo_v3", "cuStreamGetCaptureInfo_v2", "cuStreamGetCaptureInfo")
_CAPTURE_ACTIVE = 1  # CU_STREAM_CAPTURE_STATUS_ACTIVE


def capture_id(stream: int) -> int | None:
    """The id of the CUDA graph capture `stream` is taking part in (unique per capture sequence in
    the process; streams forked into one capture share it), or None where it captures nothing or
    the driver does not tell."""
    info = _functions.get("capture_info")
    if info is None:
        for name in _CAPTURE_INFO:
            try:
                info = driver_function(name, [ctypes.c_void_p] * 7)
                break
            except UnsupportedDeviceError:
                continue
        else:
            return None
        _functions["capture_info"] = info
    status, ident = ctypes.c_int(0), ctypes.c_uint64(0)
    found = info(stream or None, ctypes.byref(status), ctypes.byref(ident), None, None, None, None)
    return ident.value if found == 0 and status.value == _CAPTURE_ACTIVE else None
