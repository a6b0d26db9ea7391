"""`Linear8bitLt`: a drop-in `nn.Linear` that runs LLM.int8() (int8 matmul + fp outlier columns)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from .. import _core
from .. import functional as F
from ..errors import FormatError
from .params import Int8Params

# State dict entries beside `weight` and `bias` (names shared with bitsandbytes where it has them).
SCB_KEY = "SCB"
WEIGHT_FORMAT_KEY = "weight_format"
OUTLIER_COLS_KEY = "outlier_cols"
OUTLIER_COUNTS_KEY = "outlier_counts"
OUTLIER_BATCHES_KEY = "outlier_batches"
ROW_MAJOR = 0  # the only weight_format: bitsandbytes' 1-3 were tiled layouts it has retired
PREPARED_SHAPES = 64  # prepared forwards a layer keeps (input shapes, dtypes, devices) at most
# A layer's `siblings.SiblingGroup` (layers reading one input, multiplied as one), in __dict__.
SIBLINGS = "_siblings"


class _PreparedForwards(dict):
    """A layer's forwards prepared by `functional.prepared_linear`, by input (shape, dtype,
    device index), arithmetic, threshold and whether static outlier columns are unset: (the
    addresses of the weight, scales and bias they read, the call or None). Copies and pickles of
    the layer start empty (they prepare their own)."""

    def __deepcopy__(self, memo: dict) -> _PreparedForwards:
        return _PreparedForwards()

    def __reduce__(self):
        return (_PreparedForwards, ())


class Linear8bitLt(nn.Linear):
    """``y = x @ W.T + b`` with W in int8 and outlier input features in floating point.

    Args:
        in_features, out_features, bias, device, dtype: as for `nn.Linear`.
        has_fp16_weights: keep a floating-point master weight (training) and quantize it on every
            forward; False (inference) replaces it with int8 on the first move to a device.
        threshold: input features holding any ``|x| >= threshold`` are outlier columns computed in
            floating point; 0 disables the decomposition (plain absmax int8).
        arithmetic: ``"auto"`` (default) runs each forward in the faster of LLM.int8() and
            weight-only int8 (activations in floating point times the dequantized weight: one
            kernel for a few tokens on a GPU, and a smaller error); ``"int8"`` forces LLM.int8()'s
            int8 product, ``"weight_only"`` the weight-only one. A runtime choice: state dicts do
            not hold it, and the attribute may be changed at any time.

    Static outlier columns (``outlier_cols``, int [C], from calibration) replace per-call detection
    when set; ``outlier_counts`` / ``outlier_batches`` keep the calibration statistics behind them.
    """

    weight: Int8Params

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        has_fp16_weights: bool = True,
        threshold: float = 0.0,
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
        arithmetic: str = "auto",
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.threshold = F.checked_threshold(threshold)
        self.arithmetic = F.checked_arithmetic(arithmetic)
        self.has_fp16_weights = has_fp16_weights
        self.weight = Int8Params(
            self.weight.data, requires_grad=has_fp16_weights, has_fp16_weights=has_fp16_weights
        )
        self.outlier_cols: Optional[Tensor] = None
        self.outlier_counts: Optional[Tensor] = None
        self.outlier_batches: Optional[Tensor] = None

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        threshold: float = 0.0,
        has_fp16_weights: bool = False,
        arithmetic: str = "auto",
    ) -> Linear8bitLt:
        """A layer sharing `linear`'s weight and bias tensors (no copy; quantized on first move)."""
        weight = linear.weight
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            has_fp16_weights=has_fp16_weights,
            threshold=threshold,
            device="meta",
            arithmetic=arithmetic,
        )
        layer.weight = Int8Params(
            weight.data, requires_grad=has_fp16_weights, has_fp16_weights=has_fp16_weights
        )
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.data, requires_grad=linear.bias.requires_grad)
        return layer

    def __setattr__(self, name: str, value: Any) -> None:
        # The weight is always an `Int8Params`, also when a loader (e.g. transformers initialising
        # a weight the checkpoint lacks) assigns a plain `nn.Parameter`.
        if (
            name == "weight"
            and isinstance(value, nn.Parameter)
            and not isinstance(value, Int8Params)
        ):
            value = Int8Params(
                value.data,
                requires_grad=value.requires_grad,
                has_fp16_weights=getattr(self, "has_fp16_weights", True),
            )
        super().__setattr__(name, value)

    def set_outlier_columns(self, columns: Optional[Tensor]) -> None:
        """Fixes the outlier columns (any integer sequence in [0, in_features)), or clears them."""
        if columns is None:
            self.outlier_cols = None
            return
        values = np.asarray(torch.as_tensor(columns).cpu(), dtype=np.int64).reshape(-1)
        unique = _core.sorted_unique(values, self.in_features)
        self.outlier_cols = torch.from_numpy(unique.astype(np.int32)).to(self._stats_device())

    def _stats_device(self) -> torch.device:
        device = self.weight.device
        return torch.device("cpu") if device.type == "meta" else device

    def forward(self, x: Tensor) -> Tensor:
        siblings = self.__dict__.get(SIBLINGS)
        if siblings is not None:  # `siblings.fuse_siblings`: the group's product, one per input
            y = siblings.forward(self, x)
            if y is not None:
                return y
        if not self.has_fp16_weights and not torch.compiler.is_compiling():
            prepared = self._prepared_forward(x)
            if prepared is not None:  # eager inference: one launch, arguments packed once
                y = prepared(x)
                if y is not None:
                    return y
        weight = self.weight
        if weight.device.type == "meta":
            raise RuntimeError(
                "Linear8bitLt has no weight data (meta device): load a state dict first"
            )
        if self.has_fp16_weights:
            with torch.no_grad():
                CB, SCB = F.quantize_weight(weight)
            master = weight
        else:
            SCB = weight.SCB
            if SCB is None:  # not quantized yet: the first forward does it (once)
                SCB = weight.quantize_().SCB
            # Only the scales and the parameter itself are read (not its flags or `.data`):
            # fewer attributes for torch.compile to guard on every call (benches/NOTES.md).
            CB, master = weight, None
        return F.int8_linear(
            x, CB, SCB, self.bias, self.threshold, self.outlier_cols, master, self.arithmetic
        )

    def _prepared_forward(self, x: Tensor) -> Optional[Callable[[Tensor], Optional[Tensor]]]:
        """The forward prepared for x's shape, dtype and device (`F.prepared_linear`), where one
        applies: no gradient needed, the weight quantized, x contiguous. Prepared again when the
        weight, its scales or the bias lie at new addresses (replaced, moved or reloaded)."""
        parameters = self._parameters  # one lookup for both (Module.__getattr__ is slower)
        bias = parameters.get("bias")
        if torch.is_grad_enabled() and (
            x.requires_grad or (bias is not None and bias.requires_grad)
        ):
            return None
        weight = parameters.get("weight")
        scb = getattr(weight, "SCB", None)
        if scb is None:
            return None
        forwards = self.__dict__.get("_prepared_forwards")
        if forwards is None:
            forwards = self._prepared_forwards = _PreparedForwards()
        # LLM.int8() forwards are prepared with the threshold and without static columns.
        key = (x.shape, x.dtype, x.get_device(), self.arithmetic, self.threshold,
               self.outlier_cols is None)  # fmt: skip
        state = (weight.data_ptr(), scb.data_ptr(), 0 if bias is None else bias.data_ptr())
        found = forwards.get(key)
        if found is None or found[0] != state:
            if not x.is_contiguous() or weight.device != x.device:
                return None
            if len(forwards) >= PREPARED_SHAPES:
                forwards.clear()
            call = F.prepared_linear(
                x, weight, scb, bias, self.threshold, self.outlier_cols, self.arithmetic
            )
            if call is None and x.is_cuda and torch.cuda.is_current_stream_capturing():
                return None  # LLM.int8() is not prepared under capture: prepare it after
            found = forwards[key] = (state, call)
        call = found[1]
        return call if call is not None and x.is_contiguous() else None

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_prepared_forwards", None)
        self._leave_siblings()
        super()._apply(fn, recurse)
        # Statistics follow the weight's device, never its dtype (scales stay fp32 under .half()).
        device = self._stats_device()
        weight = self.weight
        if weight.SCB is not None:
            weight.SCB = weight.SCB.to(device)
        for name in (OUTLIER_COLS_KEY, OUTLIER_COUNTS_KEY, OUTLIER_BATCHES_KEY):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    def _leave_siblings(self) -> None:
        """Ends this layer's sibling group, if any (its members run alone from now on)."""
        siblings = self.__dict__.get(SIBLINGS)
        if siblings is not None:
            siblings.dissolve()

    def extra_repr(self) -> str:
        static = (
            "" if self.outlier_cols is None else f", static_outlier_cols={len(self.outlier_cols)}"
        )
        return (
            f"{super().extra_repr()}, threshold={self.threshold}, "
            f"has_fp16_weights={self.has_fp16_weights}, arithmetic={self.arithmetic!r}{static}"
        )

    # ---- state dicts: the int8 weight with its statistics, or a floating-point weight ----

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        weight = self.weight
        if weight.is_int8:
            destination[prefix + SCB_KEY] = weight.SCB if keep_vars else weight.SCB.detach()
            destination[prefix + WEIGHT_FORMAT_KEY] = torch.tensor(ROW_MAJOR, dtype=torch.uint8)
        for name in (OUTLIER_COLS_KEY, OUTLIER_COUNTS_KEY, OUTLIER_BATCHES_KEY):
            value = getattr(self, name)
            if value is not None:
                destination[prefix + name] = value

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        own = (
            "weight",
            SCB_KEY,
            WEIGHT_FORMAT_KEY,
            OUTLIER_COLS_KEY,
            OUTLIER_COUNTS_KEY,
            OUTLIER_BATCHES_KEY,
        )
        entries = {leaf: state_dict.get(prefix + leaf) for leaf in own}
        if entries["weight"] is not None:
            self._leave_siblings()
        rest = {
            k: v
            for k, v in state_dict.items()
            if k.startswith(prefix) and k[len(prefix) :] not in own
        }
        super()._load_from_state_dict(
            rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if entries["weight"] is not None:
            missing_keys.remove(prefix + "weight")
            self._load_weight(prefix, entries)
        elif entries[SCB_KEY] is not None:
            raise FormatError(f"{prefix}{SCB_KEY}: row scales without their weight {prefix}weight")
        self._load_outlier_state(prefix, entries)

    def _load_weight(self, prefix: str, entries: dict[str, Optional[Tensor]]) -> None:
        incoming, scb = entries["weight"], entries[SCB_KEY]
        name = prefix + "weight"
        expected = (self.out_features, self.in_features)
        if tuple(incoming.shape) != expected:
            raise FormatError(f"{name}: expected shape {expected}, got {tuple(incoming.shape)}")
        device = self.weight.device if self.weight.device.type != "meta" else incoming.device
        if incoming.dtype == torch.int8 or scb is not None:
            CB, SCB = self._checked_int8(prefix, incoming, scb, entries[WEIGHT_FORMAT_KEY])
            if self.has_fp16_weights:
                dtype = self.weight.dtype if self.weight.is_floating_point() else torch.float16
                self._set_master_weight(F.dequantize_rowwise(CB, SCB, dtype).to(device))
            else:
                self.weight = Int8Params(
                    CB.to(device),
                    has_fp16_weights=False,
                    SCB=SCB.to(device),
                    original_dtype=self.weight.original_dtype,
                )
            return
        if not incoming.is_floating_point():
            raise FormatError(
                f"{name}: expected a floating-point or int8 weight, got {incoming.dtype}"
            )
        if self.weight.is_int8:
            fresh = Int8Params(incoming.to(device), has_fp16_weights=False)
            self.weight = fresh.quantize_()
        elif self.weight.device.type == "meta":
            self._set_master_weight(incoming)
        else:
            self._set_master_weight(incoming.to(device=device, dtype=self.weight.dtype))

    def _set_master_weight(self, data: Tensor) -> None:
        """Replaces the (not yet quantized) floating-point weight, keeping the parameter's role."""
        self.weight = Int8Params(
            data, requires_grad=self.weight.requires_grad, has_fp16_weights=self.has_fp16_weights
        )

    def _checked_int8(
        self, prefix: str, CB: Tensor, SCB: Optional[Tensor], weight_format: Optional[Tensor]
    ) -> tuple[Tensor, Tensor]:
        if CB.dtype != torch.int8:
            raise FormatError(
                f"{prefix}weight: a weight with row scales must be int8, got {CB.dtype}"
            )
        if SCB is None:
            raise FormatError(
                f"{prefix}weight: int8 weight without its row scales {prefix}{SCB_KEY}"
            )
        if SCB.shape != (self.out_features,) or SCB.dtype != torch.float32:
            raise FormatError(
                f"{prefix}{SCB_KEY}: expected float32 [{self.out_features}], "
                f"got {SCB.dtype} {list(SCB.shape)}"
            )
        if not bool(torch.isfinite(SCB).all()) or bool((SCB < 0).any()):
            raise FormatError(f"{prefix}{SCB_KEY}: row scales must be finite and >= 0")
        if weight_format is not None:
            _check_weight_format(prefix + WEIGHT_FORMAT_KEY, weight_format)
        return CB, SCB

    def _load_outlier_state(self, prefix: str, entries: dict[str, Optional[Tensor]]) -> None:
        cols = entries[OUTLIER_COLS_KEY]
        if cols is not None:
            name = prefix + OUTLIER_COLS_KEY
            if cols.dim() != 1 or cols.dtype not in (torch.int32, torch.int64):
                raise FormatError(
                    f"{name}: expected 1-D int32, got {cols.dtype} {list(cols.shape)}"
                )
            values = cols.cpu().numpy().astype(np.int64)
            try:
                unique = _core.sorted_unique(values, self.in_features)
            except _core.OutlierError as err:
                raise FormatError(f"{name}: {err}") from None
            if len(unique) != len(values) or not np.array_equal(unique, values):
                raise FormatError(f"{name}: outlier columns must be strictly ascending")
            self.outlier_cols = cols.to(torch.int32).to(self._stats_device())
        counts, batches = entries[OUTLIER_COUNTS_KEY], entries[OUTLIER_BATCHES_KEY]
        if (counts is None) != (batches is None):
            raise FormatError(
                f"{prefix}{OUTLIER_COUNTS_KEY} and {prefix}{OUTLIER_BATCHES_KEY} come together"
            )
        if counts is not None:
            if counts.shape != (self.in_features,) or batches.numel() != 1:
                raise FormatError(
                    f"{prefix}{OUTLIER_COUNTS_KEY}: expected [{self.in_features}] counts and a "
                    "scalar batch count"
                )
            self.outlier_counts = counts.to(torch.int64).to(self._stats_device())
            self.outlier_batches = batches.reshape(()).to(torch.int64).to(self._stats_device())


def _check_weight_format(name: str, weight_format: Tensor) -> None:
    """bitsandbytes' layout marker: one integer, 0 (row-major)."""
    if (
        weight_format.numel() != 1
        or weight_format.dtype.is_floating_point
        or (weight_format.dtype.is_complex or weight_format.dtype == torch.bool)
    ):
        raise FormatError(
            f"{name}: expected one integer (0 = row-major), got {weight_format.dtype} "
            f"{list(weight_format.shape)}"
        )
    if int(weight_format.reshape(-1)[0]) != ROW_MAJOR:
        raise FormatError(
            f"{name}: only 0 (row-major) is supported; 1-3 were bitsandbytes' retired tiled layouts"
        )
