# ruff: noqa: E402 (peft is required, with a message naming the extra, before its imports)
"""peft integration: LoRA adapters over frozen `Linear8bitLt` layers.

peft dispatches layer types it does not know through the LoRA config's custom-module registry
(``LoraConfig._register_custom_module``); `lora_config` (or `register` on a config of your own)
puts `Linear8bitLtLora` there::

    from peft import get_peft_model
    from llmint8.integrations.peft import lora_config

    model = get_peft_model(model, lora_config(r=8, target_modules=["q_proj", "v_proj"]))

The int8 layer stays frozen; its forward passes the gradient to its input, so the adapters of
every layer train. Merging (``merge_and_unload``) adds the adapter's update to the dequantized
weight and quantizes the sum again: like any int8 merge, outputs then differ from the unmerged
model by the int8 rounding of the new weight.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

from .._optional import require

peft = require("peft", "llmint8.integrations.peft")
import torch
from peft import LoraConfig

if not hasattr(LoraConfig, "_register_custom_module"):
    raise ImportError(
        "llmint8.integrations.peft needs peft's custom LoRA modules (peft >= 0.17, found "
        f"{peft.__version__}): pip install 'llmint8[hf]'"
    )
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.tuners_utils import check_adapters_to_merge
from torch import Tensor

from ..functional import dequantize_rowwise
from ..nn import Int8Params, Linear8bitLt


class Linear8bitLtLora(LoraLinear):
    """peft's LoRA linear layer with merge/unmerge that respect int8 weights."""

    def resolve_lora_variant(self, *, config, **kwargs):
        if config.use_dora:
            # DoRA reads the dense weight through peft's bitsandbytes-only dequantization helper.
            raise NotImplementedError("DoRA adapters over llmint8's int8 layers are not supported")
        return super().resolve_lora_variant(config=config, **kwargs)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        for name in check_adapters_to_merge(self, adapter_names):
            if name not in self.lora_A:
                continue
            self._check_vanilla(name)
            self._add_to_weight(self.get_delta_weight(name), safe_merge, name)
            self._add_to_bias(name, +1.0)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name not in self.lora_A:
                continue
            self._add_to_weight(-self.get_delta_weight(name), False, name)
            self._add_to_bias(name, -1.0)

    def _check_vanilla(self, name: str) -> None:
        if name in self.lora_variant:
            raise NotImplementedError(
                f"merging the {type(self.lora_variant[name]).__name__} adapter {name!r} into an "
                "int8 layer is not supported (only plain LoRA adapters merge)"
            )

    def _add_to_weight(self, delta: Tensor, safe_merge: bool, name: str) -> None:
        base = self.get_base_layer()
        weight = base.weight
        if weight.has_fp16_weights or not weight.is_int8:
            merged = weight.data.float() + delta.float().to(weight.device)
        else:
            merged = dequantize_rowwise(weight.CB, weight.SCB, torch.float32)
            merged = merged + delta.float().to(merged.device)
        if safe_merge and not bool(torch.isfinite(merged).all()):
            raise ValueError(f"NaNs in the merged weights: the adapter {name} seems broken")
        if weight.has_fp16_weights or not weight.is_int8:
            weight.data = merged.to(weight.dtype)
            return
        fresh = Int8Params(merged, has_fp16_weights=False).quantize_()
        fresh.original_dtype = weight.original_dtype
        base.weight = fresh

    def _add_to_bias(self, name: str, sign: float) -> None:
        if not self.lora_bias[name]:
            return
        base = self.get_base_layer()
        if base.bias is None:
            raise RuntimeError("cannot merge a LoRA bias into an int8 layer without a bias")
        base.bias.data += sign * self.lora_B[name].bias * self.scaling[name]


def register(config: LoraConfig) -> LoraConfig:
    """Registers `Linear8bitLtLora` for `Linear8bitLt` in `config` (in place); returns it."""
    config._register_custom_module({Linear8bitLt: Linear8bitLtLora})
    return config


def lora_config(**kwargs: Any) -> LoraConfig:
    """A `peft.LoraConfig` (same arguments) that wraps llmint8 layers with `Linear8bitLtLora`."""
    return register(LoraConfig(**kwargs))
