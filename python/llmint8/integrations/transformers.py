# ruff: noqa: E402 (the version check comes before the imports that need a recent transformers)
"""transformers integration: ``from_pretrained(path, quantization_config=Int8Config())``.

Importing this module registers the quantization method ``"llmint8"`` with transformers' public
extension points (`register_quantization_config`, `register_quantizer`). Then:

- an fp16/bf16/fp32 checkpoint loads with every `nn.Linear` (except ``lm_head``, tied output
  embeddings and the modules named in ``skip_modules``) replaced by `Linear8bitLt`; each weight is
  quantized as it arrives on its device, one tensor at a time, so the whole floating-point model
  never sits on the GPU;
- ``save_pretrained`` writes the int8 weights (``weight`` int8, ``SCB`` float32, ``weight_format``
  uint8, plus calibrated outlier columns) with the config in ``config.json``, and
  ``from_pretrained`` on that directory loads them as they are: no re-quantization;
- `from_bitsandbytes_pretrained` loads a directory saved by transformers with bitsandbytes'
  8-bit config (same tensor names and semantics) into llmint8 layers, and
  `bitsandbytes_config` gives the config under which bitsandbytes loads llmint8's directories.

A directory saved with llmint8 names ``"quant_method": "llmint8"`` in its config (with
bitsandbytes' equivalent 8-bit fields beside it); the start-up hook the wheel installs
(``_llmint8_autoload``) imports this module when ``from_pretrained`` needs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Optional

import torch
from packaging.version import Version

from .._optional import require

transformers = require("transformers", "llmint8.integrations.transformers")

MIN_TRANSFORMERS = "5.23"  # loaders that skip the shape check for quantized params (5.23)
if Version(transformers.__version__) < Version(MIN_TRANSFORMERS):
    raise ImportError(
        f"llmint8.integrations.transformers needs transformers >= {MIN_TRANSFORMERS} (found "
        f"{transformers.__version__}): pip install 'llmint8[hf]'"
    )

from transformers import AutoConfig, AutoModelForCausalLM
from transformers.core_model_loading import ConversionOps
from transformers.quantizers import HfQuantizer, register_quantization_config, register_quantizer
from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING
from transformers.quantizers.quantizers_utils import get_module_from_name
from transformers.utils.quantization_config import QuantizationConfigMixin

from ..convert import replace_linear
from ..errors import FormatError
from ..functional import checked_arithmetic
from ..nn import Int8Params, Linear8bitLt
from ..nn.linear import (
    OUTLIER_BATCHES_KEY,
    OUTLIER_COLS_KEY,
    OUTLIER_COUNTS_KEY,
    SCB_KEY,
    WEIGHT_FORMAT_KEY,
)
from ..siblings import fuse_siblings
from .accelerate import run_cpu_modules_on_cpu

QUANT_METHOD = "llmint8"
_OUTLIER_KEYS = (OUTLIER_COLS_KEY, OUTLIER_COUNTS_KEY, OUTLIER_BATCHES_KEY)


class Int8Config(QuantizationConfigMixin):
    """LLM.int8() for transformers models.

    Args:
        threshold: outlier threshold (|x| above it keeps the feature in floating point); 0 turns
            the decomposition off.
        skip_modules: module names (dotted, matched as whole components or suffixes) kept in
            their original precision, besides ``lm_head`` and tied output embeddings.
        has_fp16_weights: keep trainable floating-point master weights (quantized per forward).
        static_outliers: ``{module name: [columns]}``: fixed outlier columns per layer (from
            `llmint8.OutlierCalibrator`) instead of detection per call.
        arithmetic: each layer's (`llmint8.nn.Linear8bitLt`): ``"auto"``, ``"int8"`` (LLM.int8()
            for every call) or ``"weight_only"``.
        fuse_siblings: once loaded, multiply the layers of one parent that read the same input
            (q/k/v, gate/up: `llmint8.DEFAULT_SIBLINGS`) as one product per input
            (`llmint8.fuse_siblings`); saved models load fused again.
    """

    def __init__(
        self,
        threshold: float = 6.0,
        skip_modules: Optional[Sequence[str]] = None,
        has_fp16_weights: bool = False,
        static_outliers: Optional[Mapping[str, Sequence[int]]] = None,
        arithmetic: str = "auto",
        fuse_siblings: bool = False,
        **kwargs: Any,
    ) -> None:
        self.quant_method = QUANT_METHOD
        if not isinstance(threshold, (int, float)) or threshold < 0 or threshold != threshold:
            raise ValueError(f"Int8Config: threshold must be a number >= 0, got {threshold!r}")
        if isinstance(skip_modules, str):
            raise TypeError("Int8Config: skip_modules is a list of module names, not one string")
        self.threshold = float(threshold)
        self.skip_modules = None if skip_modules is None else [str(m) for m in skip_modules]
        self.has_fp16_weights = bool(has_fp16_weights)
        self.arithmetic = checked_arithmetic(arithmetic)
        if not isinstance(fuse_siblings, bool):
            raise TypeError(f"Int8Config: fuse_siblings is True or False, got {fuse_siblings!r}")
        if fuse_siblings and self.has_fp16_weights:
            raise ValueError(
                "Int8Config: fuse_siblings needs int8 weights; has_fp16_weights keeps "
                "floating-point master weights"
            )
        self.fuse_siblings = fuse_siblings
        self.static_outliers = (
            None
            if static_outliers is None
            else {str(name): [int(c) for c in cols] for name, cols in static_outliers.items()}
        )
        # The bitsandbytes fields `to_dict` writes beside ours are derived from them: ignored here.
        unknown = set(kwargs) - {"quant_method"} - set(_bitsandbytes_fields(self))
        if unknown:
            raise TypeError(f"Int8Config got unknown arguments {sorted(unknown)}")

    def to_dict(self) -> dict[str, Any]:
        """Our fields, and bitsandbytes' 8-bit fields with the same meaning (``load_in_8bit``,
        ``llm_int8_threshold``, ...): where llmint8 is not installed, transformers then reads the
        directory as a bitsandbytes one (whose tensors it is, byte for byte): it loads into
        bitsandbytes' layers, or fails naming bitsandbytes to install — never skips the
        quantization and casts int8 codes to floats, as it does for an unknown method. Where
        llmint8 is installed, its start-up hook routes ``quant_method: llmint8`` here first."""
        return {**super().to_dict(), **_bitsandbytes_fields(self)}

    @classmethod
    def from_bitsandbytes(cls, config: Mapping[str, Any]) -> Int8Config:
        """The equivalent of a bitsandbytes 8-bit quantization config (a dict, as in config.json,
        or a `BitsAndBytesConfig`)."""
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if not values.get("load_in_8bit", False):
            raise ValueError("not a bitsandbytes 8-bit config (load_in_8bit is not set)")
        return cls(
            threshold=values.get("llm_int8_threshold", 6.0),
            skip_modules=values.get("llm_int8_skip_modules"),
            has_fp16_weights=values.get("llm_int8_has_fp16_weight", False),
        )


def bitsandbytes_config(config: Int8Config) -> dict[str, Any]:
    """The bitsandbytes 8-bit quantization config (as in config.json) under which transformers
    loads an llmint8 directory into bitsandbytes layers (same tensors, same semantics)."""
    if config.static_outliers:
        raise ValueError("bitsandbytes has no static outlier columns; this config names some")
    return {"quant_method": "bitsandbytes", **_bitsandbytes_fields(config)}


def _bitsandbytes_fields(config: Int8Config) -> dict[str, Any]:
    """bitsandbytes' 8-bit config fields (without its quant_method) equivalent to `config`."""
    return {
        "load_in_8bit": True,
        "load_in_4bit": False,
        "llm_int8_threshold": config.threshold,
        # bitsandbytes' list replaces its default (lm_head); ours comes besides lm_head.
        "llm_int8_skip_modules": None
        if config.skip_modules is None
        else [*config.skip_modules, "lm_head"],
        "llm_int8_has_fp16_weight": config.has_fp16_weights,
        "llm_int8_enable_fp32_cpu_offload": False,
    }


class Int8Quantize(ConversionOps):
    """On-the-fly loading: a floating-point weight becomes int8 rows and scales on its device."""

    def __init__(self, hf_quantizer: Int8HfQuantizer) -> None:
        self.hf_quantizer = hf_quantizer

    def convert(self, input_dict, model=None, full_layer_name=None, **kwargs):
        has_fp16_weights = self.hf_quantizer.quantization_config.has_fp16_weights
        result = {}
        for name, value in input_dict.items():
            value = value[0] if isinstance(value, list) else value
            param = Int8Params(
                value, requires_grad=has_fp16_weights, has_fp16_weights=has_fp16_weights
            )
            result[name] = param.quantize_()
        return result


class Int8Deserialize(ConversionOps):
    """Pre-quantized loading: a layer's ``weight`` (int8), ``SCB``, ``weight_format`` and outlier
    statistics, collected from the checkpoint, become its parameter as they are."""

    def __init__(self, hf_quantizer: Int8HfQuantizer) -> None:
        self.hf_quantizer = hf_quantizer

    def convert(self, input_dict, model=None, full_layer_name=None, **kwargs):
        # An exception here reaches transformers' loading report, which names it and refuses to
        # return the model (RuntimeError).
        tensors = {
            key.rpartition(".")[2]: value[0] if isinstance(value, list) else value
            for key, value in input_dict.items()
        }
        module, _ = get_module_from_name(model, full_layer_name)
        if not isinstance(module, Linear8bitLt) or set(tensors) == {"weight"}:
            return {"weight": tensors["weight"]} if "weight" in tensors else input_dict
        prefix = full_layer_name.rpartition(".")[0] + "."
        if "weight" not in tensors:
            raise FormatError(f"{prefix}: {sorted(tensors)} without {prefix}weight")
        entries = {key: tensors.get(key) for key in ("weight", SCB_KEY, WEIGHT_FORMAT_KEY)}
        module._load_outlier_state(prefix, {key: tensors.get(key) for key in _OUTLIER_KEYS})
        weight = entries["weight"]
        if weight.dtype != torch.int8:  # a floating-point weight in an int8 model's file
            param = Int8Params(weight, has_fp16_weights=module.has_fp16_weights)
            return {"weight": param if module.has_fp16_weights else param.quantize_()}
        CB, SCB = module._checked_int8(prefix, weight, entries[SCB_KEY], entries[WEIGHT_FORMAT_KEY])
        if module.has_fp16_weights:
            from ..functional import dequantize_rowwise

            dense = dequantize_rowwise(CB, SCB, torch.float32)
            return {"weight": Int8Params(dense, requires_grad=True, has_fp16_weights=True)}
        module._is_hf_initialized = True
        return {"weight": Int8Params(CB, has_fp16_weights=False, SCB=SCB.to(CB.device))}


class Int8HfQuantizer(HfQuantizer):
    """transformers' side of `Int8Config` (see the module docstring)."""

    requires_calibration = False
    quantization_config: Int8Config
    # A layer's weight and what travels with it in the files, loaded together.
    serialized_names: ClassVar[dict[str, list[str]]] = {
        "weight": ["weight", SCB_KEY, WEIGHT_FORMAT_KEY, *_OUTLIER_KEYS]
    }

    @property
    def quantized_element_size(self) -> float:
        return 1

    def validate_environment(self, *args, **kwargs) -> None:
        device_map = kwargs.get("device_map")
        if isinstance(device_map, Mapping) and "disk" in set(map(str, device_map.values())):
            raise ValueError(
                "llmint8 layers run on GPUs and the CPU; offloading to disk is not supported "
                "(give max_memory room for the int8 weights on 'cpu' instead)"
            )

    def update_device_map(self, device_map):
        if device_map is None:
            device_map = {"": torch.cuda.current_device() if torch.cuda.is_available() else "cpu"}
        return device_map

    def adjust_max_memory(self, max_memory):
        return {key: value * 0.90 for key, value in max_memory.items()}  # room for activations

    def param_needs_quantization(self, model, param_name: str, **kwargs) -> bool:
        module, name = get_module_from_name(model, param_name)
        return isinstance(module, Linear8bitLt) and name == "weight"

    def _process_model_before_weight_loading(self, model, device_map=None, **kwargs):
        config = self.quantization_config
        self.modules_to_not_convert = self.get_modules_to_not_convert(
            model, config.skip_modules, model._keep_in_fp32_modules, add_default_skips=True
        )
        replace_linear(
            model,
            threshold=config.threshold,
            skip_modules=self.modules_to_not_convert,
            has_fp16_weights=config.has_fp16_weights,
            arithmetic=config.arithmetic,
        )
        return model

    def _process_model_after_weight_loading(self, model, **kwargs):
        # Layers whose weights transformers initialised itself (missing from the checkpoint, or
        # a head it added; Linear8bitLt keeps even those an Int8Params) are int8 layers like the
        # others: quantized here, so the model saves and reloads as it runs. quantize_ leaves
        # int8, master and meta weights alone. (Tied output embeddings and skipped modules stay
        # nn.Linear.)
        for layer in model.modules():
            if isinstance(layer, Linear8bitLt):
                layer.weight.quantize_()
        for name, columns in (self.quantization_config.static_outliers or {}).items():
            layer = model.get_submodule(name)
            if not isinstance(layer, Linear8bitLt):
                raise ValueError(f"static_outliers names {name!r}, which is not an int8 layer")
            layer.set_outlier_columns(torch.tensor(columns))
        run_cpu_modules_on_cpu(model)  # device-map entries "cpu": the CPU backend runs them
        if self.quantization_config.fuse_siblings:
            fuse_siblings(model)  # after the move: each group's rows concatenated on its device
        model.is_loaded_in_8bit = True
        return model

    def is_serializable(self) -> bool:
        return True

    @property
    def is_trainable(self) -> bool:
        return True

    def get_quantize_ops(self):
        return Int8Quantize(self)

    def get_load_operations(self) -> dict:
        return {"deserialize": Int8Deserialize}


def _register() -> None:
    # Idempotent: a reload of this module must not fail on the first registration.
    if AUTO_QUANTIZATION_CONFIG_MAPPING.get(QUANT_METHOD) is not Int8Config:
        AUTO_QUANTIZATION_CONFIG_MAPPING.pop(QUANT_METHOD, None)
        register_quantization_config(QUANT_METHOD)(Int8Config)
    if AUTO_QUANTIZER_MAPPING.get(QUANT_METHOD) is not Int8HfQuantizer:
        AUTO_QUANTIZER_MAPPING.pop(QUANT_METHOD, None)
        register_quantizer(QUANT_METHOD)(Int8HfQuantizer)


_register()


def from_bitsandbytes_pretrained(path, model_class=AutoModelForCausalLM, **kwargs):
    """Loads a directory saved by transformers with bitsandbytes' 8-bit config into llmint8
    layers: the same tensors (``weight`` int8, ``SCB``, ``weight_format``), read as they are."""
    config = kwargs.pop("config", None) or AutoConfig.from_pretrained(path)
    quantization = getattr(config, "quantization_config", None)
    if quantization is None:
        raise ValueError(f"{path}: config.json has no quantization_config")
    config.quantization_config = Int8Config.from_bitsandbytes(quantization).to_dict()
    return model_class.from_pretrained(path, config=config, **kwargs)
