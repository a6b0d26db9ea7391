"""Backends do the arithmetic of `llmint8.functional` on one kind of device.

Each backend module provides the same functions on 2-D tensors (the caller flattens batch dims
and checks dtypes):

- ``quantize_rows(x, threshold, outlier_cols) -> (q, row_absmax, outlier_cols)``
- ``int8_linear(x, CB, SCB, bias, threshold, outlier_cols, auto=False) -> y``: LLM.int8();
  with ``auto`` (a call of ``arithmetic="auto"``) the backend may multiply an input with many
  outlier columns weight-only instead, where it finds their number without a host sync
- ``int8_matmul(a, b) -> int32 [M, N]``  (``a`` int8 ``[M, K]``, ``b`` int8 ``[N, K]``)
- ``weight_only_linear(x, CB, SCB, bias) -> y``: the activations in floating point times the
  dequantized weight (no activation quantization)
- ``prefers_weight_only(x, CB) -> bool``: what ``arithmetic="auto"`` picks for this call

`linear` runs one forward on the backend of its tensors, in the arithmetic the caller chose.
`functional.py` documents the numerics every backend must follow. Backends that keep scratch
memory between calls allocate it per call instead inside `transient_workspaces()`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Optional

import torch
from torch import Tensor

from ..errors import UnsupportedDeviceError

ARITHMETICS = ("auto", "int8", "weight_only")
"""How a forward multiplies: ``"int8"`` is LLM.int8() (int8 activations, exact int32 products,
outlier columns in floating point), ``"weight_only"`` keeps every activation in floating point
and multiplies it by the dequantized weight, ``"auto"`` lets the backend pick the faster of the
two for the call (`prefers_weight_only`)."""

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


def linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
    arithmetic: str,
) -> Tensor:
    """One forward of ``x`` [M, K] on the backend of its device, in `arithmetic` (checked by the
    caller; see ARITHMETICS). Threshold and outlier columns matter to ``"int8"`` alone."""
    backend = backend_for(x.device)
    if arithmetic == "weight_only" or (arithmetic == "auto" and backend.prefers_weight_only(x, CB)):
        return backend.weight_only_linear(x, CB, SCB, bias)
    return backend.int8_linear(x, CB, SCB, bias, threshold, outlier_cols, auto=arithmetic == "auto")


def dequantized(values: Tensor, row_absmax: Tensor, dtype: torch.dtype) -> Tensor:
    """``values * row_absmax[:, None] / 127`` in `dtype`, computed in at least fp32."""
    compute = torch.promote_types(torch.float32, dtype)
    return (values.to(compute) * (row_absmax.to(compute)[:, None] / 127.0)).to(dtype)
