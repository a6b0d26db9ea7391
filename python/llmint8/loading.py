"""Shard-by-shard loading of a floating-point checkpoint (safetensors, or PyTorch files read with
``weights_only=True``) into an int8 model built
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
TORCH_INDEX_FILE = "pytorch_model.bin.index.json"
TORCH_SINGLE_FILE = "pytorch_model.bin"
TORCH_SUFFIXES = (".bin", ".pt", ".pth")


def repository_root(directory: Path) -> Path:
    """The folder a checkpoint directory's files may link into: the directory itself, or, for a
    snapshot in the Hugging Face cache layout (``<repo>/snapshots/<revision>/``, whose files are
    relative links into ``<repo>/blobs/``), the repository folder ``<repo>``."""
    real = directory.resolve()
    if real.parent.name == "snapshots" and (real.parent.parent / "blobs").is_dir():
        return real.parent.parent
    return real


def _inside(root: Path, file: Path) -> bool:
    return file.resolve().is_relative_to(root)


def read_index(index_file: Path) -> tuple[dict, list[Path]]:
    """A sharded checkpoint's index and its shard files, which must be named inside the index's
    directory (no ``..``, no absolute paths) and lie, links resolved, inside it or, in the
    Hugging Face cache layout, inside the model's repository folder (`repository_root`)."""
    try:
        index = json.loads(index_file.read_text())
        names = sorted(set(index["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise FormatError(f"{index_file}: not a checkpoint index ({err})") from None
    root = repository_root(index_file.parent)
    files = []
    for name in names:
        candidate = Path(name) if isinstance(name, str) else None
        if (
            candidate is None
            or candidate.is_absolute()
            or ".." in candidate.parts
            or not _inside(root, index_file.parent / candidate)
        ):
            raise FormatError(f"{index_file}: shard {name!r} is outside the checkpoint directory")
        files.append(index_file.parent / candidate)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FormatError(f"{index_file}: names shards that are not there: {missing[:3]}")
    return index, files


def single_file(directory: Path, name: str) -> Path:
    """``directory / name``, refused (`FormatError`) when it links outside the directory (or the
    model's repository folder in the Hugging Face cache layout)."""
    file = directory / name
    if not _inside(repository_root(directory), file):
        raise FormatError(f"{file}: links outside the checkpoint directory")
    return file


def checkpoint_files(checkpoint: PathLike) -> list[Path]:
    """The weight files of a checkpoint: a file, or a directory holding ``model.safetensors``, a
    sharded checkpoint's ``model.safetensors.index.json``, or their PyTorch-format equivalents
    (``pytorch_model.bin`` and its index)."""
    path = Path(checkpoint)
    if path.is_file():
        return [path]
    for index_name in (INDEX_FILE, TORCH_INDEX_FILE):
        if (path / index_name).is_file():
            return read_index(path / index_name)[1]
    for single in (SINGLE_FILE, TORCH_SINGLE_FILE):
        if (path / single).is_file():
            return [single_file(path, single)]
    raise FileNotFoundError(f"{path}: no {SINGLE_FILE}, {INDEX_FILE} or {TORCH_SINGLE_FILE} there")


def read_state(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of one weight file on the CPU: safetensors through the Rust core; PyTorch
    files (``.bin``/``.pt``) through ``torch.load(weights_only=True)``, which refuses anything but
    tensors and plain containers, so that loading never runs code from the file. PyTorch files
    are read into memory rather than mapped: a mapped file truncated by another process would
    kill this process with SIGBUS when a tensor is touched."""
    if file.suffix not in TORCH_SUFFIXES:
        return load_state_dict(file)[0]
    return load_torch_state(file, mmap=False)


def check_torch_file(file: Path) -> None:
    """`FormatError` naming `file` unless it is a PyTorch state dict of plain tensors (read with
    ``weights_only=True`` and mapped, its tensor data untouched): the check to make before
    handing a directory to a loader that would report a refused pickle with a traceback."""
    load_torch_state(file, mmap=True)


def load_torch_state(file: Path, mmap: bool) -> dict[str, torch.Tensor]:
    """A PyTorch state dict of plain tensors (`FormatError` for anything else), mapped or read."""
    import pickle

    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise FormatError(
            f"{file}: refused: it holds Python objects besides tensors, and loading those could "
            "run code (torch.load with weights_only=True rejects them)"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise FormatError(f"{file}: not a PyTorch checkpoint ({err})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise FormatError(f"{file}: not a state dict (a mapping of names to tensors)")
    return state


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
        shard = read_state(file)
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
        if not weight.is_int8 and not module.has_fp16_weights:
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
