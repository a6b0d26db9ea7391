"""Model conversion: every `nn.Linear` of a model becomes a `Linear8bitLt`."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .functional import checked_arithmetic, checked_threshold
from .nn import Linear8bitLt

DEFAULT_SKIP_MODULES = ("lm_head",)


def matches_module(name: str, patterns: Iterable[str]) -> bool:
    """Whether the dotted module `name` contains any pattern as whole components
    (``"lm_head"`` matches ``"lm_head"`` and ``"model.lm_head"``, not ``"lm_head2"``)."""
    padded = f".{name}."
    return any(f".{p.strip('.')}." in padded for p in patterns if p)


def replace_linear(
    model: nn.Module,
    threshold: float = 6.0,
    skip_modules: Iterable[str] = DEFAULT_SKIP_MODULES,
    has_fp16_weights: bool = False,
    arithmetic: str = "auto",
) -> nn.Module:
    """Replaces, in place, each `nn.Linear` of `model` not named in `skip_modules` by a
    `Linear8bitLt` sharing its weight and bias (no copy). Returns the model (or the new layer when
    `model` itself is an `nn.Linear`).

    Works on models built under ``accelerate.init_empty_weights()``: meta weights stay meta until
    a state dict is loaded. The weights are quantized on the first move to a device (or forward).
    `arithmetic` is each layer's (see `Linear8bitLt`): ``"int8"`` forces LLM.int8() everywhere.
    """
    skip = tuple(skip_modules or ())
    threshold = checked_threshold(threshold)
    arithmetic = checked_arithmetic(arithmetic)

    def convert(linear: nn.Linear) -> Linear8bitLt:
        return Linear8bitLt.from_linear(linear, threshold, has_fp16_weights, arithmetic)

    if type(model) is nn.Linear:
        return convert(model)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and not isinstance(module, Linear8bitLt)
        and not matches_module(name, skip)
    ]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, convert(module))
    return model
