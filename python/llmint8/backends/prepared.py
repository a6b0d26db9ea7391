"""Kernel launches prepared once per call shape: eager forwards at the cost of their launches.

`Kernel.launch` packs every argument on every call (a dozen `struct` fields, the tensor maps of
the TMA kernels looked up by their arguments). A `PreparedLaunch` packs them once, into a
parameter buffer of its own per thread, and per call writes only the two addresses that change
between calls of one shape, the input's and the output's (for a TMA kernel the input's tensor map
is moved to the new address, `tensor_maps.replace_address`), then hands the buffer to
``cuLaunchKernel`` through kernelParams on PyTorch's current stream. A `PreparedSequence` is
several such steps sharing a workspace (LLM.int8(): quantize, gather, product), a region of which
is zeroed before them.
"""

from __future__ import annotations

import struct
import threading
from typing import Optional

import numpy as np
import torch

from .cuda_kernels import Kernel, cupy_module, current_stream, parameter_offsets
from .tensor_maps import replace_address

_ADDRESS = struct.Struct("@Q")
_MAP_ALIGNMENT = 64  # a CUtensorMap's alignment


class PreparedLaunch:
    """`kernel` on `grid` with `shared_mem` bytes and the arguments `args`, of which parameter
    `input_param` (a device address, or with `input_is_map` a tensor map) and `output_param`
    (a device address) are replaced on every call (None: neither is a parameter). With
    `stream`, the arguments hold that stream's workspace: calls on another stream launch nothing
    and return False. `dependent`: as `Kernel.launch_packed`."""

    def __init__(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        shared_mem: int,
        args: tuple,
        input_param: Optional[int],
        output_param: Optional[int],
        input_is_map: bool = False,
        stream: Optional[int] = None,
        dependent: bool = True,
    ) -> None:
        self.kernel = kernel  # keeps the module loaded
        self.grid, self.shared_mem, self.args = grid, shared_mem, args
        self._offsets = parameter_offsets(kernel.layout.format.lstrip("@"))
        self._input = None if input_param is None else self._offsets[input_param]
        self._output = None if output_param is None else self._offsets[output_param]
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

    def _pack(self, input_address: int, output_address: int) -> int:
        """Writes the two addresses into this thread's buffer; returns its kernelParams."""
        found = getattr(self._local, "buffer", None)
        params, address, kernel_params = found or self._buffer()
        if self._input is not None:
            if self._input_is_map:
                replace_address(address + self._input, input_address)
            else:
                _ADDRESS.pack_into(params, self._input, input_address)
        if self._output is not None:
            _ADDRESS.pack_into(params, self._output, output_address)
        return kernel_params

    def accepts(self) -> Optional[int]:
        """The stream a call now launches on, or None where it must not (another stream than
        the one whose workspace the arguments hold): checked before the caller allocates."""
        stream = current_stream(self.kernel.index)
        return None if self._stream is not None and stream != self._stream else stream

    def launch(self, stream: int, input_address: int, output_address: int) -> None:
        """Launches on `stream` (from `accepts`) through `Kernel.launch_packed`."""
        kernel_params = self._pack(input_address, output_address)
        self.kernel.launch_packed(
            self.grid, self.shared_mem, kernel_params, 0, stream, self._dependent
        )  # fmt: skip

    def enqueue(self, stream: int, input_address: int, output_address: int) -> None:
        """Launches on `stream` straight through ``cuLaunchKernel``, without `launch_packed`'s
        checks: for a caller that has checked the stream, that the kernel's GPU is the current
        device with its context bound in this thread, and that no graph is being captured."""
        kernel, (x, y, z) = self.kernel, self.grid
        kernel_params = self._pack(input_address, output_address)
        _launch_kernel()(kernel.pointer, x, y, z, kernel.threads, 1, 1, self.shared_mem, stream,
                         kernel_params, 0)  # fmt: skip


class PreparedSequence:
    """Steps (`PreparedLaunch`, or callables of no arguments) that share `workspace`, held here:
    per call `zero_bytes` at `zero_at` in it are zeroed, then the steps run in order on the stream
    they were prepared for, checked once for all of them (`accepts`: not from another thread or
    on another stream, whose workspace is another, nor with another device current, nor while a
    CUDA graph is captured, where a call takes its workspace from the graph's pool). `mask`,
    where given, is the stream's outlier mask that the steps leave zeroed: held here too."""

    def __init__(
        self, steps: list, workspace: torch.Tensor, zero_at: int, zero_bytes: int, stream: int,
        mask: Optional[torch.Tensor] = None,
    ) -> None:  # fmt: skip
        self.steps, self.workspace, self.mask = steps, workspace, mask
        self.zero_at, self.zero_bytes = zero_at, zero_bytes
        self.index, self.stream = workspace.device.index, stream
        self.thread = threading.get_ident()
        self._bound = False  # the first call launches through Kernel.launch_packed (context)

    def accepts(self) -> Optional[int]:
        """The stream a call now runs on, or None where it must not (see the class)."""
        stream = current_stream(self.index)
        if stream != self.stream or threading.get_ident() != self.thread or _capturing():
            return None
        return stream if cupy_module().cuda.runtime.getDevice() == self.index else None

    def launch(self, stream: int, input_address: int, output_address: int) -> None:
        """Runs the steps on `stream` (from `accepts`)."""
        if self.zero_bytes:
            cupy_module().cuda.runtime.memsetAsync(self.zero_at, 0, self.zero_bytes, stream)
        try:
            for step in self.steps:
                if not isinstance(step, PreparedLaunch):
                    step()
                elif self._bound:
                    step.enqueue(stream, input_address, output_address)
                else:
                    step.launch(stream, input_address, output_address)
        except BaseException:
            if self.mask is not None:  # no kernel will zero it after a failed launch
                self.mask.zero_()
            raise
        self._bound = True


_capturing = torch.cuda.is_current_stream_capturing


def _launch_kernel():
    """CuPy's binding of ``cuLaunchKernel``."""
    return cupy_module().cuda.driver.launchKernel
