"""`llmint8 quantize --calibrate TEXT`: static outlier columns from real text, stored in the
int8 directory (``outlier_cols``, ``outlier_counts``, ``outlier_batches`` per layer)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from .. import _core
from .._optional import require
from ..calibration import OutlierCalibrator
from ..nn.linear import OUTLIER_BATCHES_KEY, OUTLIER_COLS_KEY, OUTLIER_COUNTS_KEY
from . import UsageError
from .checkpoints import RawTensor, read_tensors

MAX_TOKENS = 512
# Header keys the writer sets itself.
_RESERVED = tuple(_core.RESERVED_METADATA_KEYS)


def text_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not UTF-8 text ({err.reason})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"{path}: holds no text")
    return lines


def load_model(directory: Path, device: str, **kwargs):
    """A transformers model of the class its config names (the base model when it names none)."""
    transformers = require("transformers", "loading a transformers model")

    from ..integrations import transformers as _registered  # noqa: F401  (registers llmint8)

    config = transformers.AutoConfig.from_pretrained(directory)
    architecture = getattr(transformers, (config.architectures or ["AutoModel"])[0], None)
    architecture = architecture or transformers.AutoModel
    return architecture.from_pretrained(directory, device_map=device, **kwargs).eval()


def default_device(device: Optional[str]) -> str:
    return device or ("cuda:0" if torch.cuda.is_available() else "cpu")


def calibrate_directory(
    work: Path,
    source: Path,
    text_file: Path,
    weight_map: dict[str, str],
    device: Optional[str],
    min_fraction: float,
    progress: bool,
) -> dict[str, int]:
    """Runs the lines of `text_file` (one sequence each) through the int8 model in `work`,
    records outlier columns per layer, and adds the static columns to `work`'s shards (listed in
    `weight_map`, which is updated). Returns the number of static columns per layer."""
    transformers = require("transformers", "--calibrate")

    lines = text_lines(text_file)
    device = default_device(device)
    model = load_model(work, device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    with OutlierCalibrator(model) as calibration, torch.no_grad():
        for line in tqdm(lines, desc="calibrating", unit="line", disable=not progress):
            batch = tokenizer(line, return_tensors="pt", truncation=True, max_length=MAX_TOKENS)
            model(**batch.to(device))
    chosen = calibration.apply(min_fraction)
    additions: dict[str, list[RawTensor]] = defaultdict(list)
    for name, layer in calibration.layers.items():
        file = weight_map[f"{name}.weight"]
        for key in (OUTLIER_COLS_KEY, OUTLIER_COUNTS_KEY, OUTLIER_BATCHES_KEY):
            additions[file].append(RawTensor.of(f"{name}.{key}", getattr(layer, key)))
    for file, extra in additions.items():
        tensors, metadata = read_tensors(work / file)
        entries = [t.entry() for t in tensors] + [t.entry() for t in extra]
        kept = {k: v for k, v in metadata.items() if k not in _RESERVED}
        _core.write_checkpoint(os.fspath(work / file), entries, kept)
        weight_map.update({t.name: file for t in extra})
    return chosen
