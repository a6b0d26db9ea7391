"""Shard-by-shard loading of a floating-point safetensors checkpoint into an int8 model built
without memory::

    with accelerate.init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    llmint8.replace_linear(model)
    llmint8.load_checkpoint_shards(model, "path/to/checkpoint", device="cuda")

Each shard is read (through the Rust core: no pickle), its tensors placed on `device`, and every
int8 layer whose weight arrived is quantized there at once, before the next shard is read: the
floating-point model never exists in full, on the host or on the GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import FormatError
from .nn import Int8Params, Linear8bitLt
from .serialization import PathLike, load_state_dict

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def checkpoint_files(checkpoint: PathLike) -> list[Path]:
    """The safetensors files of a checkpoint: a file, or a directory holding ``model.safetensors``
    or a sharded checkpoint's ``model.safetensors.index.json``."""
    path = Path(checkpoint)
    if path.is_file():
        return [path]
    if (path / INDEX_FILE).is_file():
        try:
            weight_map = json.loads((path / INDEX_FILE).read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as err:
            raise FormatError(f"{path / INDEX_FILE}: not a safetensors index ({err})") from None
        return [path / name for name in sorted(set(weight_map.values()))]
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE]
    raise FileNotFoundError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE} there")


def load_checkpoint_shards(
    model: nn.Module,
    checkpoint: PathLike,
    device: Any = "cpu",
    dtype: Optional[torch.dtype] = None,
    progress: bool = True,
) -> nn.Module:
    """Loads a floating-point checkpoint into `model` (built on the meta device, its linear layers
    replaced by `replace_linear`), one shard at a time, quantizing each int8 layer's weight on
    `device` as it arrives. `dtype` casts floating-point tensors (e.g. ``torch.float16``).

    Raises `FormatError` for a tensor the model does not have, a shape that does not fit, or a
    parameter no shard provides (tied parameters are tied after loading)."""
    device = torch.device(device)
    expected = set(model.state_dict().keys())
    for file in tqdm(checkpoint_files(checkpoint), desc="Loading shards", disable=not progress):
        shard, _ = load_state_dict(file)
        unexpected = sorted(set(shard) - expected)
        if unexpected:
            raise FormatError(f"{file}: tensors the model does not have: {unexpected[:5]}")
        if dtype is not None:
            shard = {k: v.to(dtype) if v.is_floating_point() else v for k, v in shard.items()}
        _check_shapes(model, shard, file)
        model.load_state_dict(shard, strict=False, assign=True)
        for name in shard:
            _place(model, name, device)
        del shard
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.device.type == "meta"
    ]
    if missing:
        raise FormatError(f"{checkpoint}: no shard holds {missing[:5]}")
    return model


def _check_shapes(model: nn.Module, shard: dict[str, torch.Tensor], file: Path) -> None:
    current = model.state_dict(keep_vars=True)
    for name, tensor in shard.items():
        if tuple(current[name].shape) != tuple(tensor.shape):
            raise FormatError(
                f"{file}: {name} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(current[name].shape)}"
            )


def _place(model: nn.Module, name: str, device: torch.device) -> None:
    """Moves the tensor `name`, just loaded on the CPU, to `device`; an int8 layer's weight is
    quantized there."""
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if isinstance(module, Linear8bitLt) and leaf == "weight":
        weight = module.weight
        if not weight.is_quantized and not module.has_fp16_weights:
            fresh = Int8Params(weight.data.to(device), has_fp16_weights=False).quantize_()
            module.weight = fresh
        else:
            module.weight = Int8Params(
                weight.data.to(device),
                requires_grad=weight.requires_grad,
                has_fp16_weights=weight.has_fp16_weights,
                SCB=None if weight.SCB is None else weight.SCB.to(device),
                original_dtype=weight.original_dtype,
            )
        return
    if leaf in module._parameters and module._parameters[leaf] is not None:
        param = module._parameters[leaf]
        module._parameters[leaf] = nn.Parameter(
            param.data.to(device), requires_grad=param.requires_grad
        )
    elif leaf in module._buffers and module._buffers[leaf] is not None:
        module._buffers[leaf] = module._buffers[leaf].to(device)
