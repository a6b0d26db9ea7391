"""Finding the safetensors files of a checkpoint and reading them one tensor at a time."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import _core
from ..errors import FormatError
from ..loading import (
    INDEX_FILE,
    SINGLE_FILE,
    TORCH_INDEX_FILE,
    TORCH_SINGLE_FILE,
    TORCH_SUFFIXES,
    load_torch_state,
    read_index,
    read_state,
    single_file,
)
from . import UsageError

CONFIG_FILE = "config.json"


@dataclass
class Checkpoint:
    """A checkpoint on disk: one safetensors file, or a directory of one or several (sharded,
    with an index), possibly a transformers model directory (with ``config.json``)."""

    path: Path
    files: list[Path]
    is_directory: bool
    index: Optional[dict] = None

    @property
    def config(self) -> Optional[dict]:
        if not self.is_directory or not (self.path / CONFIG_FILE).is_file():
            return None
        file = single_file(self.path, CONFIG_FILE)  # never a link out of the model's folder
        try:
            return json.loads(file.read_text())
        except ValueError as err:
            raise UsageError(f"{file}: not valid JSON ({err})") from None

    def holds_int8_weights(self) -> bool:
        """Whether any file holds 2-D int8 ``*.weight`` tensors (from the headers alone)."""
        return any(
            name.endswith(".weight") and dtype == "int8" and len(shape) == 2
            for name, dtype, shape in self.tensor_headers()
        )

    def tensor_headers(self) -> Iterator[tuple[str, str, list[int]]]:
        """(name, dtype, shape) of every tensor, from the safetensors headers alone (PyTorch files
        are memory-mapped)."""
        for file in self.files:
            if is_torch_file(file):
                # Mapped, and only shapes are read: no data page is touched.
                for name, t in load_torch_state(file, mmap=True).items():
                    yield name, str(t.dtype).removeprefix("torch."), list(t.shape)
                continue
            reader = _core.CheckpointReader(os.fspath(file), False)
            for name in reader.names():
                dtype, shape = reader.info(name)
                yield name, dtype, list(shape)

    @property
    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def open_checkpoint(path: os.PathLike) -> Checkpoint:
    """A safetensors or PyTorch (``.bin``/``.pt``) file, or a directory with one or a sharded set
    with its index."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if not path.is_file() and not path.is_dir():
        raise UsageError(f"{path}: not a regular file or directory (a FIFO, socket or device)")
    if path.is_file():
        if path.suffix != ".safetensors" and path.suffix not in TORCH_SUFFIXES:
            raise UsageError(f"{path}: not a checkpoint file (*.safetensors, *.bin or *.pt)")
        return Checkpoint(path, [path], is_directory=False)
    for index_name in (INDEX_FILE, TORCH_INDEX_FILE):
        if (path / index_name).is_file():
            index, files = read_index(path / index_name)
            return Checkpoint(path, files, is_directory=True, index=index)
    for single in (SINGLE_FILE, TORCH_SINGLE_FILE):
        if (path / single).is_file():
            return Checkpoint(path, [single_file(path, single)], is_directory=True)
    raise UsageError(
        f"{path}: not a checkpoint (no {SINGLE_FILE}, {INDEX_FILE} or {TORCH_SINGLE_FILE})"
    )


def is_torch_file(file: Path) -> bool:
    return file.suffix in TORCH_SUFFIXES


def safetensors_name(file: Path) -> str:
    """The name a weight file's int8 copy gets (PyTorch files become safetensors files, named as
    transformers names them)."""
    if not is_torch_file(file):
        return file.name
    return file.with_suffix(".safetensors").name.replace("pytorch_model", "model", 1)


@dataclass
class RawTensor:
    """One tensor as stored: name, dtype name (torch's), shape and its bytes."""

    name: str
    dtype: str
    shape: list[int]
    raw: np.ndarray

    def to_torch(self) -> torch.Tensor:
        dtype = getattr(torch, self.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise FormatError(f"{self.name}: unsupported dtype {self.dtype!r}")
        if self.raw.size == 0:
            return torch.empty(self.shape, dtype=dtype)
        return torch.from_numpy(self.raw).view(dtype).reshape(self.shape)

    @staticmethod
    def of(name: str, tensor: torch.Tensor) -> RawTensor:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        return RawTensor(name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape), raw)

    def entry(self) -> tuple:
        return (self.name, self.dtype, self.shape, self.raw)


def read_tensors(file: Path, verify_checksums: bool = True) -> tuple[Iterator[RawTensor], dict]:
    """The tensors of one file, read one at a time (positioned reads), and its metadata."""
    if is_torch_file(file):
        state = read_state(file)
        return (RawTensor.of(name, tensor) for name, tensor in state.items()), {}
    reader = _core.CheckpointReader(os.fspath(file), verify_checksums)

    def tensors() -> Iterator[RawTensor]:
        for name in reader.names():
            dtype, shape, raw = reader.read(name)
            yield RawTensor(name, dtype, list(shape), raw)

    return tensors(), reader.metadata()
