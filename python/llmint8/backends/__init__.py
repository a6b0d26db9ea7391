"""Backends do the arithmetic of `llmint8.functional` on one kind of device.

Each backend module provides the same three functions on 2-D tensors (the caller flattens batch
dims and checks dtypes):

- ``quantize_rows(x, threshold, outlier_cols) -> (q, row_absmax, outlier_cols)``
- ``int8_linear(x, CB, SCB, bias, threshold, outlier_cols) -> y``
- ``int8_matmul(a, b) -> int32 [M, N]``  (``a`` int8 ``[M, K]``, ``b`` int8 ``[N, K]``)

`functional.py` documents the numerics every backend must follow.
"""

from __future__ import annotations

from types import ModuleType

import torch

from ..errors import UnsupportedDeviceError


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
