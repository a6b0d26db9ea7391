"""`llmint8 inspect PATH`: what int8 does to each layer of a checkpoint.

For an int8 checkpoint (llmint8's or bitsandbytes'): each layer's shape, original and int8
dtypes, bytes before and after, calibrated outlier columns, and the weight quantization error
*estimated* from the row scales (rounding to the nearest of 255 levels leaves an error uniform in
half a step, RMS ``step / sqrt(12)`` with ``step = SCB / 127``), relative to the weight's norm.
For a floating-point checkpoint: the layers `llmint8 quantize` would make int8, with the exact
error ``||W - deq(q(W))|| / ||W||``. Tensors are read one at a time.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

from .. import functional as F
from ..nn.linear import (
    OUTLIER_BATCHES_KEY,
    OUTLIER_COLS_KEY,
    OUTLIER_COUNTS_KEY,
    SCB_KEY,
    WEIGHT_FORMAT_KEY,
)
from ..serialization import ORIGINAL_DTYPE_KEY
from . import UsageError
from .checkpoints import RawTensor, open_checkpoint, read_tensors
from .quantize import is_target, linear_weight_names

_STATS = (OUTLIER_COLS_KEY, OUTLIER_COUNTS_KEY, OUTLIER_BATCHES_KEY)
_COMPANIONS = (SCB_KEY, WEIGHT_FORMAT_KEY, *_STATS)
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4}


@dataclass
class LayerReport:
    name: str
    shape: list[int]
    dtype_in: str
    dtype_out: str
    bytes_before: int
    bytes_after: int
    weight_error: float
    error_estimated: bool
    outlier_columns: Optional[int] = None
    outlier_fraction: Optional[list[float]] = field(default=None, repr=False)


@dataclass
class InspectReport:
    path: str
    quantized: bool
    layers: list[LayerReport]
    other_bytes: int

    @property
    def bytes_before(self) -> int:
        return self.other_bytes + sum(layer.bytes_before for layer in self.layers)

    @property
    def bytes_after(self) -> int:
        return self.other_bytes + sum(layer.bytes_after for layer in self.layers)

    @property
    def calibrated(self) -> bool:
        return any(layer.outlier_columns is not None for layer in self.layers)

    def table(self) -> str:
        head = ["layer", "shape", "dtype", "MiB before", "MiB after", "weight error", "outliers"]
        rows = []
        for layer in self.layers:
            approx = "≈" if layer.error_estimated else ""
            rows.append([
                layer.name, "×".join(map(str, layer.shape)), f"{layer.dtype_in}→{layer.dtype_out}",
                f"{layer.bytes_before / 2**20:.3f}", f"{layer.bytes_after / 2**20:.3f}",
                f"{approx}{layer.weight_error:.5f}",
                "" if layer.outlier_columns is None else str(layer.outlier_columns),
            ])  # fmt: skip
        errors = [layer.weight_error for layer in self.layers]
        rows.append([
            f"total ({len(self.layers)} int8 layers + other tensors)", "", "",
            f"{self.bytes_before / 2**20:.3f}", f"{self.bytes_after / 2**20:.3f}",
            f"max {max(errors):.5f}" if errors else "",
            str(sum(layer.outlier_columns or 0 for layer in self.layers))
            if self.calibrated else "",
        ])  # fmt: skip
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                      enumerate(zip(row, widths)))
            for row in [head, *rows]
        ]  # fmt: skip
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.insert(-1, "  ".join("-" * w for w in widths))
        kind = "int8" if self.quantized else "floating-point (the layers as int8 would be)"
        note = "≈: estimated from the row scales" if self.quantized else "errors exact"
        return f"{self.path}: {kind} checkpoint; {note}\n" + "\n".join(lines)

    def to_json(self) -> str:
        layers = [{k: v for k, v in asdict(layer).items() if k != "outlier_fraction"}
                  for layer in self.layers]  # fmt: skip
        return json.dumps({
            "path": self.path, "quantized": self.quantized, "layers": layers,
            "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
        }, indent=2)  # fmt: skip

    def outlier_heatmap(self) -> tuple[list[str], np.ndarray]:
        """Layers reading the most common input width (the model's hidden size: the residual
        stream, where LLM.int8()'s systematic outlier features live) × feature: share of
        calibration batches in which the feature was an outlier."""
        layers = [layer for layer in self.layers if layer.outlier_fraction is not None]
        if not layers:
            return [], np.zeros((0, 0))
        width = Counter(len(layer.outlier_fraction) for layer in layers).most_common(1)[0][0]
        chosen = [layer for layer in layers if len(layer.outlier_fraction) == width]
        names = [layer.name for layer in chosen]
        return names, np.array([layer.outlier_fraction for layer in chosen])

    def plot(self, png: os.PathLike) -> None:
        from .plots import plot_inspection

        plot_inspection(self, png)


def inspect_checkpoint(path: os.PathLike) -> InspectReport:
    """`llmint8 inspect`: per layer of the checkpoint at `path` (a file or directory, int8 or
    floating point) its shape, dtypes, bytes before and after, weight quantization error (exact
    for a floating-point checkpoint, estimated from the row scales for an int8 one) and
    calibrated outlier columns. The report has ``.table()``, ``.to_json()`` and ``.plot(png)``.
    Reads headers and weights one tensor at a time; raises `UsageError` or `FormatError`."""
    checkpoint = open_checkpoint(path)
    config = checkpoint.config
    quantized = checkpoint.holds_int8_weights()
    targets = None if quantized or config is None else linear_weight_names(checkpoint, 6.0, None)
    layers: list[LayerReport] = []
    other = 0
    pending: dict[str, dict[str, RawTensor]] = {}
    for file in checkpoint.files:
        tensors, metadata = read_tensors(file)
        original = metadata.get(ORIGINAL_DTYPE_KEY) or _config_dtype(config)
        for tensor in tensors:
            module, _, leaf = tensor.name.rpartition(".")
            if not quantized:
                if is_target(tensor, targets, None):
                    layers.append(_float_layer(tensor))
                else:
                    other += tensor.raw.nbytes
                continue
            if leaf == "weight" and tensor.dtype == "int8" and len(tensor.shape) == 2:
                pending.setdefault(module, {})["weight"] = tensor
            elif leaf in _COMPANIONS:
                pending.setdefault(module, {})[leaf] = tensor
            else:
                other += tensor.raw.nbytes
                continue
            parts = pending[module]
            if "weight" in parts and SCB_KEY in parts and _complete(parts):
                layers.append(_int8_layer(module, pending.pop(module), original))
    for module, parts in pending.items():
        if "weight" in parts and SCB_KEY in parts:
            layers.append(_int8_layer(module, parts, _config_dtype(config)))
        elif "weight" in parts:
            raise UsageError(f"{module}.weight: int8 without its row scales {module}.{SCB_KEY}")
        else:
            other += sum(t.raw.nbytes for t in parts.values())
    if not layers:
        raise UsageError(f"{path}: no linear layers to report (no 2-D weights)")
    return InspectReport(os.fspath(path), quantized, layers, other)


def _complete(parts: dict[str, RawTensor]) -> bool:
    """Whether a layer's outlier statistics, when it has some, have all arrived."""
    stats = set(_STATS)
    return not (stats & parts.keys()) or stats <= parts.keys()


def _config_dtype(config: Optional[dict]) -> str:
    dtype = (config or {}).get("torch_dtype") or (config or {}).get("dtype") or "float16"
    return dtype if dtype in _ITEMSIZE else "float16"


def _int8_layer(module: str, parts: dict[str, RawTensor], original: str) -> LayerReport:
    weight = parts["weight"].to_torch()
    scb = parts[SCB_KEY].to_torch().double()
    rows, cols = weight.shape
    dense_norm = float(F.dequantize_rowwise(weight, scb.float(), torch.float32).double().norm())
    rounding = math.sqrt(float(((scb / 127) ** 2).sum()) * cols / 12)
    error = rounding / dense_norm if dense_norm > 0 else 0.0
    after = sum(t.raw.nbytes for t in parts.values())
    columns = fraction = None
    if OUTLIER_COLS_KEY in parts:
        columns = int(parts[OUTLIER_COLS_KEY].to_torch().numel())
    if OUTLIER_COUNTS_KEY in parts and OUTLIER_BATCHES_KEY in parts:
        counts = parts[OUTLIER_COUNTS_KEY].to_torch().double()
        batches = max(1, int(parts[OUTLIER_BATCHES_KEY].to_torch().reshape(-1)[0]))
        fraction = (counts / batches).tolist()
    original = original if original in _ITEMSIZE else "float16"
    return LayerReport(
        module, [rows, cols], original, "int8", rows * cols * _ITEMSIZE[original], after,
        error, True, columns, fraction,
    )  # fmt: skip


def _float_layer(tensor: RawTensor) -> LayerReport:
    weight = tensor.to_torch()
    CB, SCB = F.quantize_weight(weight)
    dense = weight.double()
    norm = float(dense.norm())
    diff = float((F.dequantize_rowwise(CB, SCB, torch.float64) - dense).norm())
    rows, cols = weight.shape
    after = rows * cols + 4 * rows + 1
    module = tensor.name.removesuffix(".weight")
    return LayerReport(
        module, [rows, cols], tensor.dtype, "int8", tensor.raw.nbytes, after,
        diff / norm if norm > 0 else 0.0, False,
    )  # fmt: skip
