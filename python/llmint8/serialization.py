"""Saving and loading int8 models and state dicts, through the Rust core (safetensors, no pickle).

A file holds, per quantized linear ``P``: ``P.weight`` (int8), ``P.SCB`` (float32 row absmax),
``P.weight_format`` (uint8 0 = row-major), ``P.bias`` and, after calibration, ``P.outlier_cols``,
``P.outlier_counts``, ``P.outlier_batches``; every other tensor of the model as it is. The header
metadata records the format version, thresholds, original dtype and the linear layers left in
floating point; each tensor carries a checksum verified on load.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from . import _core
from ._leftovers import clear_leftovers
from .convert import replace_linear
from .errors import FormatError
from .nn import Linear8bitLt

PathLike = Union[str, "os.PathLike[str]"]

# llmint8's metadata keys; the core validates their values on write and on read.
THRESHOLD_KEY = _core.THRESHOLD_KEY
LAYERS_KEY = _core.LAYERS_KEY
ORIGINAL_DTYPE_KEY = _core.ORIGINAL_DTYPE_KEY
SKIPPED_KEY = _core.SKIPPED_KEY


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype_from_name(name: str, tensor: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise FormatError(f"{tensor}: unsupported dtype {name!r}")
    return dtype


def save_state_dict(
    state_dict: Mapping[str, Tensor], path: PathLike, metadata: Optional[Mapping[str, str]] = None
) -> None:
    """Writes `state_dict` to `path` atomically; refuses (with `FormatError`) an int8 layer whose
    statistics are missing or inconsistent. Metadata values must be strings."""
    entries = []
    for name, tensor in state_dict.items():
        if not isinstance(tensor, Tensor):
            raise FormatError(f"{name}: not a tensor ({type(tensor).__name__})")
        if tensor.device.type == "meta":
            raise FormatError(f"{name}: has no data (meta device); load or materialize it first")
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        entries.append((name, _dtype_name(tensor.dtype), list(tensor.shape), raw))
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    target = Path(os.fspath(path))
    # Temporary files of earlier writers killed before their rename (.NAME.PID-NANOS.tmp).
    clear_leftovers(target.parent, f".{target.name}.")
    _core.write_checkpoint(os.fspath(path), entries, meta)


def load_state_dict(
    path: PathLike, device: Any = "cpu", verify_checksums: bool = True
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Reads a file written by `save_state_dict` (or by transformers with bitsandbytes' int8
    layout): ``(state_dict, metadata)``. Validated and checksum-verified (unless
    ``verify_checksums=False``, which skips only the checksums); raises `FormatError` naming the
    first bad tensor."""
    reader = _core.CheckpointReader(os.fspath(path), verify_checksums)
    state = {}
    for name in reader.names():
        dtype_name, shape, raw = reader.read(name)
        dtype = _dtype_from_name(dtype_name, name)
        if raw.size:
            tensor = torch.from_numpy(raw).view(dtype).reshape(shape)
        else:
            tensor = torch.empty(shape, dtype=dtype)
        state[name] = tensor.to(device) if device is not None else tensor
    return state, reader.metadata()


def _int8_layers(model: nn.Module) -> dict[str, Linear8bitLt]:
    return {name: m for name, m in model.named_modules() if isinstance(m, Linear8bitLt)}


def _model_metadata(model: nn.Module) -> dict[str, str]:
    layers = _int8_layers(model)
    thresholds = {m.threshold for m in layers.values()}
    dtypes = Counter(m.weight.original_dtype for m in layers.values() if m.weight.original_dtype)
    skipped = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not isinstance(m, Linear8bitLt)
    ]
    return {
        THRESHOLD_KEY: str(thresholds.pop()) if len(thresholds) == 1 else "mixed",
        LAYERS_KEY: json.dumps(
            {
                name: {"threshold": m.threshold, "has_fp16_weights": m.has_fp16_weights}
                for name, m in layers.items()
            },
            sort_keys=True,
        ),
        ORIGINAL_DTYPE_KEY: dtypes.most_common(1)[0][0] if dtypes else "",
        SKIPPED_KEY: json.dumps(skipped),
    }


def save_quantized(
    model: nn.Module, path: PathLike, metadata: Optional[Mapping[str, str]] = None
) -> None:
    """Saves a model converted with `replace_linear` (int8 weights, their statistics and every
    other tensor) to one safetensors file, atomically.

    Layers not yet quantized (never moved or run) are quantized in place first, exactly as their
    first move would, so the file and the model agree.
    """
    for name, layer in _int8_layers(model).items():
        if layer.weight.device.type == "meta":
            raise FormatError(f"{name}.weight: has no data (meta device); nothing to save")
        layer.weight.quantize_()
    meta = _model_metadata(model)
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    save_state_dict(model.state_dict(), path, meta)


def _layer_settings(metadata: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per-layer settings (the core has checked their shape and values when it read the file)."""
    raw = metadata.get(LAYERS_KEY)
    return json.loads(raw) if raw else {}


def _default_threshold(metadata: Mapping[str, str]) -> float:
    """The file-wide threshold, for layers without settings of their own (0 when "mixed")."""
    value = metadata.get(THRESHOLD_KEY, "0")
    return 0.0 if value == "mixed" else float(value)


def load_quantized(
    model: nn.Module,
    path: PathLike,
    device: Any = None,
    strict: bool = True,
    verify_checksums: bool = True,
) -> nn.Module:
    """Loads a file written by `save_quantized` into `model`, bit-exactly and without
    re-quantization. `nn.Linear` layers that the file holds in int8 are converted first (with the
    threshold recorded for them), so a freshly built floating-point model works, including one
    built under ``accelerate.init_empty_weights()``. Tensors go to `device` (default: where each
    parameter already is; CPU for meta ones). Returns the model."""
    state, metadata = load_state_dict(
        path, device=device or "cpu", verify_checksums=verify_checksums
    )
    settings = _layer_settings(metadata)
    default = _default_threshold(metadata)
    int8_prefixes = [
        name[: -len("SCB")].rstrip(".") for name in state if name.split(".")[-1] == "SCB"
    ]
    for prefix in int8_prefixes:
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            if strict:
                raise FormatError(f"{prefix}.weight: the model has no module {prefix!r}") from None
            continue
        if not isinstance(module, nn.Linear):
            raise FormatError(
                f"{prefix}.weight: the file holds an int8 linear layer there, but the model's "
                f"{prefix!r} is a {type(module).__name__}"
            )
        if not isinstance(module, Linear8bitLt):
            threshold = float(settings.get(prefix, {}).get("threshold", default))
            replacement = replace_linear(module, threshold=threshold, skip_modules=())
            if not prefix:
                model = replacement
                continue
            parent, _, attr = prefix.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, replacement)
    has_meta = any(t.device.type == "meta" for t in model.state_dict().values())
    model.load_state_dict(state, strict=strict, assign=has_meta)
    return model
