"""The named exceptions of llmint8.

`FormatError`, `PackingError`, `OutlierError` and `ShapeError` are raised by the Rust core and
re-exported here;
the rest are raised by the Python layer. All of them are importable from `llmint8` directly.
"""

from __future__ import annotations

from ._core import FormatError, OutlierError, PackingError, ShapeError

__all__ = [
    "CublasError",
    "DeviceMismatchError",
    "FormatError",
    "MissingDependencyError",
    "OutlierError",
    "PackingError",
    "QuantizationError",
    "ShapeError",
    "UnsupportedDeviceError",
    "UnsupportedDtypeError",
]


class UnsupportedDeviceError(RuntimeError):
    """No llmint8 backend can run on the requested device (or the device is too old)."""


class UnsupportedDtypeError(TypeError):
    """A tensor of a dtype llmint8 cannot quantize or multiply (e.g. integer activations)."""


class QuantizationError(ValueError):
    """A tensor that cannot be quantized faithfully (e.g. a weight with NaN or Inf values)."""


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


class DeviceMismatchError(ValueError):
    """Tensors that must be on one device (input, weight, statistics) are not."""


class CublasError(RuntimeError):
    """cuBLAS returned an error status for a product llmint8 handed it."""
