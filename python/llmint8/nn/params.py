"""`Int8Params`: a weight that turns into int8 rows (``CB``) and row scales (``SCB``) on its first
move to a device, and never again.

The names ``CB`` / ``SCB`` and the constructor's keywords follow bitsandbytes, because accelerate
and transformers construct and move parameters of this class by name.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import Tensor

from .. import functional as F
from ..errors import QuantizationError


class Int8Params(torch.nn.Parameter):
    """A linear layer's weight ``[out_features, in_features]``.

    - ``has_fp16_weights=False``: the floating-point data is quantized on the first move to a
      device (``.to``, ``.cuda``, ``.cpu``) or first forward; the parameter's data then *is* the
      int8 ``CB`` and ``SCB`` holds the float32 row absmax. Later moves only move.
    - ``has_fp16_weights=True``: the data stays floating point (a trainable master weight);
      layers quantize it on every forward. ``CB``/``SCB`` stay None.
    """

    has_fp16_weights: bool
    SCB: Optional[Tensor]
    original_dtype: Optional[str]

    def __new__(
        cls,
        data: Optional[Tensor] = None,
        requires_grad: bool = False,
        has_fp16_weights: bool = False,
        CB: Optional[Tensor] = None,
        SCB: Optional[Tensor] = None,
        original_dtype: Optional[str] = None,
    ) -> Int8Params:
        if CB is not None:
            data = CB
        if data is None:
            data = torch.empty(0)
        requires_grad = bool(requires_grad) and data.is_floating_point()
        param = torch.Tensor._make_subclass(cls, data, requires_grad)
        param.has_fp16_weights = has_fp16_weights
        param.SCB = SCB
        param.original_dtype = original_dtype
        return param

    @property
    def CB(self) -> Optional[Tensor]:
        """The int8 rows of the weight (the parameter's own data), or None before quantization."""
        return self.data if self.is_int8 else None

    @CB.setter
    def CB(self, value: Optional[Tensor]) -> None:
        if value is not None:
            self.data = value

    @property
    def is_int8(self) -> bool:
        """Whether the data is the int8 rows, with their scales. (Not ``is_quantized``: that is
        torch.Tensor's flag for its own quantized dtypes, which torch.compile consults.)"""
        return self.dtype == torch.int8 and self.SCB is not None

    def quantize_(self) -> Int8Params:
        """Replaces floating-point data by its int8 rows, in place, once. A no-op for master
        weights (``has_fp16_weights``), for data already int8 and on the meta device."""
        if self.has_fp16_weights or self.is_int8 or self.device.type == "meta":
            return self
        if self.dim() != 2:
            raise QuantizationError(f"Int8Params must be 2-D [out, in], got {tuple(self.shape)}")
        CB, SCB = F.quantize_weight(self.data)
        F.refuse_nonfinite_rows(SCB, "weight")
        self.original_dtype = str(self.dtype).removeprefix("torch.")
        self.requires_grad_(False)
        self.data = CB
        self.SCB = SCB
        return self

    def _moved(self, data: Tensor) -> Int8Params:
        # Scales on the meta device hold no values: dropped when the data comes back from meta
        # (accelerate's offload hooks park weights there and restore them without their scales,
        # which `integrations.accelerate` then loads).
        stale = self.SCB is None or (self.SCB.is_meta and not data.is_meta)
        scb = None if stale else self.SCB.to(data.device)
        return Int8Params(
            data,
            requires_grad=self.requires_grad,
            has_fp16_weights=self.has_fp16_weights,
            SCB=scb,
            original_dtype=self.original_dtype,
        )

    def to(self, *args: Any, **kwargs: Any) -> Int8Params:  # type: ignore[override]
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if self.is_int8 or self.dtype == torch.int8:
            dtype = None  # int8 rows keep their dtype; a float cast would destroy them
        data = super().to(device=device, dtype=dtype, non_blocking=non_blocking)
        quantize_here = (
            device is not None
            and device.type != "meta"
            and not self.has_fp16_weights
            and self.is_floating_point()
        )
        if quantize_here:
            # Mutating self keeps accelerate's and nn.Module._apply's `param.data = result` intact.
            self.data = data
            return self.quantize_()
        return self._moved(data)

    def cuda(self, device: Any = None, non_blocking: bool = False, **kwargs: Any) -> Int8Params:  # type: ignore[override]
        if device is None or isinstance(device, int):
            device = torch.device("cuda", device)
        return self.to(torch.device(device), non_blocking=non_blocking)

    def cpu(self, **kwargs: Any) -> Int8Params:  # type: ignore[override]
        return self.to("cpu")

    def __repr__(self) -> str:
        return f"Int8Params containing:\n{self.data!r}"

    def __deepcopy__(self, memo: dict) -> Int8Params:
        result = Int8Params(
            self.data.clone(memory_format=torch.preserve_format),
            requires_grad=self.requires_grad,
            has_fp16_weights=self.has_fp16_weights,
            SCB=copy.deepcopy(self.SCB, memo),
            original_dtype=self.original_dtype,
        )
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, protocol: int):  # keep the statistics when pickled (e.g. torch.save)
        return (
            _rebuild_int8_params,
            (self.data, self.requires_grad, self.has_fp16_weights, self.SCB, self.original_dtype),
        )


def _rebuild_int8_params(data, requires_grad, has_fp16_weights, SCB, original_dtype):
    return Int8Params(data, requires_grad, has_fp16_weights, SCB=SCB, original_dtype=original_dtype)
