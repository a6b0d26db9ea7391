"""Backends do the arithmetic of `llmint8.functional` on one kind of device.

Each backend module provides the same three functions on 2-D tensors (the caller flattens batch
dims and checks dtypes):

- ``quantize_rows(x, threshold, outlier_cols) -> (q, row_absmax, outlier_cols)``
- ``int8_linear(x, CB, SCB, bias, threshold, outlier_cols) -> y``
- ``int8_matmul(a, b) -> int32 [M, N]``  (``a`` int8 ``[M, K]``, ``b`` int8 ``[N, K]``)

`functional.py` documents the numerics every backend must follow. Backends that keep scratch
memory between calls allocate it per call instead inside `transient_workspaces()`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import ModuleType

import torch

from ..errors import UnsupportedDeviceError

_workspaces = threading.local()


@contextlib.contextmanager
def transient_workspaces() -> Iterator[None]:
    """Calls made inside keep no scratch memory past their own end. torch.compile's CUDA graphs
    (mode="reduce-overhead") run their warm-up calls with torch's allocator serving a private
    pool, which must hold no tensor that outlives the call that made it."""
    previous = workspaces_are_transient()
    _workspaces.transient = True
    try:
        yield
    finally:
        _workspaces.transient = previous


def workspaces_are_transient() -> bool:
    """Whether this thread is inside `transient_workspaces()`."""
    return getattr(_workspaces, "transient", False)


def backend_for(device: torch.device) -> ModuleType:
    """The backend module that runs on `device`."""
    if device.type == "cpu":
        from . import cpu

        return cpu
    if device.type == "cuda":
        from . import cuda

        return cuda
    raise UnsupportedDeviceError(
        f"llmint8 has no backend for device type {device.type!r} (it runs on cpu and cuda)"
    )
