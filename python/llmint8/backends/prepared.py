"""Kernel launches prepared once per call shape: eager forwards at the cost of one launch.

`Kernel.launch` packs every argument on every call (a dozen `struct` fields, the tensor maps of
the TMA kernels looked up by their arguments). A `PreparedLaunch` packs them once, into a
parameter buffer of its own per thread, and per call writes only the two addresses that change
between calls of one shape, the input's and the output's (for a TMA kernel the input's tensor map
is moved to the new address, `tensor_maps.replace_address`), then hands the buffer to
``cuLaunchKernel`` through kernelParams on PyTorch's current stream.
"""

from __future__ import annotations

import struct
import threading
from typing import Optional

import numpy as np

from .cuda_kernels import Kernel, current_stream, parameter_offsets
from .tensor_maps import replace_address

_ADDRESS = struct.Struct("@Q")
_MAP_ALIGNMENT = 64  # a CUtensorMap's alignment


class PreparedLaunch:
    """`kernel` on `grid` with `shared_mem` bytes and the arguments `args`, of which parameter
    `input_param` (a device address, or with `input_is_map` a tensor map) and `output_param`
    (a device address) are replaced on every call. With `stream`, the arguments hold that
    stream's workspace: calls on another stream launch nothing and return False. `dependent`:
    as `Kernel.launch_packed`."""

    def __init__(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        shared_mem: int,
        args: tuple,
        input_param: int,
        output_param: int,
        input_is_map: bool = False,
        stream: Optional[int] = None,
        dependent: bool = True,
    ) -> None:
        self.kernel = kernel  # keeps the module loaded
        self.grid, self.shared_mem, self.args = grid, shared_mem, args
        self._offsets = parameter_offsets(kernel.layout.format.lstrip("@"))
        self._input = self._offsets[input_param]
        self._output = self._offsets[output_param]
        self._input_is_map = input_is_map
        self._stream = stream
        self._dependent = dependent
        self._local = threading.local()

    def _buffer(self) -> tuple[np.ndarray, int, int]:
        """This thread's parameter buffer (64-byte aligned: tensor maps are moved in place),
        its address and cuLaunchKernel's kernelParams for it."""
        size = self.kernel.layout.size
        raw = np.zeros(size + _MAP_ALIGNMENT, dtype=np.uint8)
        start = -raw.ctypes.data % _MAP_ALIGNMENT
        params = raw[start : start + size]
        self.kernel.layout.pack_into(params, 0, *self.args)
        address = params.ctypes.data
        pointers = np.array([address + o for o in self._offsets], dtype=np.uint64)
        self._local.keep = (raw, pointers)
        found = self._local.buffer = (params, address, pointers.ctypes.data)
        return found

    def __call__(self, input_address: int, output_address: int) -> bool:
        kernel = self.kernel
        stream = current_stream(kernel.index)
        if self._stream is not None and stream != self._stream:
            return False
        found = getattr(self._local, "buffer", None)
        params, address, kernel_params = found or self._buffer()
        if self._input_is_map:
            replace_address(address + self._input, input_address)
        else:
            _ADDRESS.pack_into(params, self._input, input_address)
        _ADDRESS.pack_into(params, self._output, output_address)
        kernel.launch_packed(
            self.grid, self.shared_mem, kernel_params, 0, stream, self._dependent
        )  # fmt: skip
        return True
