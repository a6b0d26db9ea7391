"""llmint8: LLM.int8() inference for any PyTorch model.

Linear layers run with int8 weights (vector-wise absmax quantization) and keep outlier input
features in floating point (mixed-precision decomposition): half the memory of fp16.
"""

import _llmint8_autoload  # noqa: F401 (transformers finds "llmint8" too where no .pth ran)

from . import functional, nn
from ._core import FORMAT_VERSION
from .calibration import OutlierCalibrator
from .convert import replace_linear
from .errors import (
    CublasError,
    DeviceMismatchError,
    FormatError,
    MissingDependencyError,
    OutlierError,
    PackingError,
    QuantizationError,
    ShapeError,
    UnsupportedDeviceError,
    UnsupportedDtypeError,
)
from .loading import load_checkpoint_shards
from .nn import Int8Params, Linear8bitLt
from .serialization import load_quantized, load_state_dict, save_quantized, save_state_dict
from .siblings import fuse_siblings, unfuse_siblings

__version__ = "0.1.0"

# The `llmint8` command's subcommands as functions (imported on first use).
_COMMANDS = {
    "quantize_checkpoint": ("tools.quantize", "quantize"),
    "inspect_checkpoint": ("tools.inspect", "inspect_checkpoint"),
    "evaluate_model": ("tools.evaluate", "evaluate"),
    "run_bench": ("tools.bench", "run_bench"),
}


def __getattr__(name: str):
    if name in _COMMANDS:
        import importlib

        module, attribute = _COMMANDS[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMAT_VERSION",
    "CublasError",
    "DeviceMismatchError",
    "FormatError",
    "Int8Params",
    "Linear8bitLt",
    "MissingDependencyError",
    "OutlierCalibrator",
    "OutlierError",
    "PackingError",
    "QuantizationError",
    "ShapeError",
    "UnsupportedDeviceError",
    "UnsupportedDtypeError",
    "__version__",
    "evaluate_model",
    "functional",
    "fuse_siblings",
    "inspect_checkpoint",
    "load_checkpoint_shards",
    "load_quantized",
    "load_state_dict",
    "nn",
    "quantize_checkpoint",
    "replace_linear",
    "run_bench",
    "save_quantized",
    "save_state_dict",
    "unfuse_siblings",
]
