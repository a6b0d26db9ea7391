"""`llmint8 quantize SRC DST`: an int8 copy of a checkpoint, streamed shard by shard.

SRC is a safetensors file, a directory of (sharded) safetensors, or a transformers model
directory. In a transformers directory the linear layers are those `from_pretrained(...,
quantization_config=Int8Config(...))` would make int8 (the model is built on the meta device to
find them); elsewhere every 2-D floating-point ``*.weight`` not named by a skip pattern.
Each input shard becomes one output shard (int8 ``weight``, ``SCB``, ``weight_format`` per layer,
everything else as it is), written with checksums; at most one shard's output and one tensor are
held in memory. A directory is written under a temporary name beside DST and renamed at the end,
so an interrupted run leaves no DST. ``--calibrate`` runs text through the int8 model and stores
static outlier columns (with their counts) in DST.

What is refused before any work: options out of range, a DST that overlaps SRC (equal, inside it,
or holding it: replacing it would destroy the source), a DST whose directory does not exist, and
an existing DST without ``overwrite`` (checked again, atomically, when the result is moved into
place, so two runs cannot both write it). Side files (tokenizer, generation config, …) are copied
as regular files; links among them whose target lies outside SRC's directory are not followed and
not copied (listed in the report), so no content from elsewhere ends up in DST.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _core
from .. import functional as F
from .._leftovers import clear_leftovers
from .._optional import require
from ..convert import matches_module
from ..errors import UnsupportedDtypeError
from ..loading import repository_root
from ..nn.linear import ROW_MAJOR, SCB_KEY, WEIGHT_FORMAT_KEY
from ..serialization import LAYERS_KEY, ORIGINAL_DTYPE_KEY, SKIPPED_KEY, THRESHOLD_KEY
from . import Interrupted, UsageError
from .checkpoints import (
    CONFIG_FILE,
    INDEX_FILE,
    TORCH_INDEX_FILE,
    Checkpoint,
    RawTensor,
    open_checkpoint,
    read_tensors,
    safetensors_name,
)

# Without a model config: 2-D weights whose names hold one of these stay as they are.
DEFAULT_SKIP = ("lm_head", "embed_tokens", "embeddings", "embed", "wte", "wpe", "shared")
FLOAT_DTYPES = ("float16", "bfloat16", "float32")
# Tensors `--dtype` casts (a float64 norm or buffer may be left in floating point too).
CASTABLE_DTYPES = (*FLOAT_DTYPES, "float64")


@dataclass
class QuantizeReport:
    files: int = 0
    tensors: int = 0
    layers: list[str] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    calibrated: dict[str, int] = field(default_factory=dict)
    not_copied: list[str] = field(default_factory=list)
    """Side files left out: links whose target lies outside SRC, and special files."""
    how_to_load: str = ""
    """One line of Python that loads what was written."""

    def table(self) -> str:
        rows = [
            ("files", str(self.files)),
            ("tensors", str(self.tensors)),
            ("int8 layers", str(len(self.layers))),
            ("size before", f"{self.bytes_in / 2**20:.2f} MiB"),
            ("size after", f"{self.bytes_out / 2**20:.2f} MiB"),
        ]
        if self.calibrated:
            columns = sum(self.calibrated.values())
            rows.append(("static outlier columns", f"{columns} in {len(self.calibrated)} layers"))
        if self.not_copied:
            rows.append(("not copied", ", ".join(self.not_copied)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def quantize(
    src: os.PathLike,
    dst: os.PathLike,
    threshold: float = 6.0,
    skip: Optional[list[str]] = None,
    calibrate: Optional[os.PathLike] = None,
    overwrite: bool = False,
    progress: bool = True,
    device: Optional[str] = None,
    min_fraction: float = 0.5,
    dtype: Optional[str] = None,
) -> QuantizeReport:
    """`llmint8 quantize`: writes an int8 copy of the checkpoint `src` (a safetensors or PyTorch
    file, a directory of them, or a transformers model directory) to `dst` (a file for a file,
    else a directory), shard by shard, atomically.

    Args:
        threshold: the outlier threshold the int8 layers run with (recorded in the copy).
        skip: module names kept in floating point (besides ``lm_head``; without a model config
            also the embeddings).
        calibrate: a text file whose lines run through the int8 model to store static outlier
            columns (transformers directories only); `min_fraction` is the share of lines in
            which a column must be an outlier to become static.
        overwrite: replace an existing `dst` (atomically); without it an existing `dst` is
            refused, also one that appears while this runs.
        progress: a progress bar on stderr. `device`: where calibration runs.
        dtype: ``"float16"``, ``"bfloat16"`` or ``"float32"`` for the tensors left in floating
            point (embeddings, norms, biases, skipped layers); default: as they are.

    Returns a `QuantizeReport` (its ``how_to_load`` is the line of Python that loads `dst`).
    Raises `UsageError`, `FormatError`, `QuantizationError`, `UnsupportedDtypeError` or
    `MissingDependencyError`, before anything is written wherever the headers allow; `dst` is
    then left as it was. Ctrl-C raises `Interrupted`, whose message says what became of `dst`.
    """
    threshold = checked_threshold(threshold)
    min_fraction = checked_fraction(min_fraction)
    cast = checked_dtype(dtype)
    checkpoint = open_checkpoint(src)
    dst = Path(dst)
    _check_destination(checkpoint, dst, overwrite)
    config = checkpoint.config
    if calibrate is not None:
        if config is None:
            raise UsageError("--calibrate needs a transformers model directory (with config.json)")
        if not Path(calibrate).is_file():
            raise UsageError(f"{calibrate}: no such text file")
    targets = linear_weight_names(checkpoint, threshold, skip) if config else None
    _check_targets(checkpoint, targets, skip)
    if not checkpoint.is_directory and dst.suffix != ".safetensors":
        raise UsageError(f"{dst}: a file in, a .safetensors file out")
    before = _identity(dst)
    try:
        report = _quantize(checkpoint, dst, targets, threshold, skip, calibrate, overwrite,
                           progress, device, min_fraction, cast)  # fmt: skip
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_outcome(dst, before)) from None
    report.how_to_load = how_to_load(checkpoint, dst)
    return report


def how_to_load(checkpoint: Checkpoint, dst: Path) -> str:
    """The line of Python that loads the int8 copy at `dst` of `checkpoint`."""
    config = checkpoint.config
    if config is not None:
        # transformers finds llmint8 by itself (the start-up hook the wheel installs).
        import transformers  # there: a config means linear_weight_names imported it

        names = config.get("architectures") or []
        name = names[0] if names and hasattr(transformers, str(names[0])) else "AutoModel"
        return f"transformers.{name}.from_pretrained({str(dst)!r})"
    if checkpoint.is_directory:
        return f"llmint8.load_state_dict(shard) for each *.safetensors file in {str(dst)!r}"
    return f"llmint8.load_quantized(model, {str(dst)!r})  # or llmint8.load_state_dict(path)"


def checked_threshold(threshold: float) -> float:
    try:
        return F.checked_threshold(threshold)
    except (TypeError, ValueError):
        raise UsageError(f"--threshold must be a finite number >= 0, got {threshold}") from None


def checked_dtype(dtype: Optional[str]) -> Optional[torch.dtype]:
    if dtype is None:
        return None
    if dtype not in FLOAT_DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
    return getattr(torch, dtype)


def checked_fraction(fraction: float) -> float:
    value = float(fraction)
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise UsageError(f"--min-fraction must be in (0, 1], got {fraction}")
    return value


def _identity(path: Path) -> Optional[tuple[int, int, int]]:
    """What tells a replaced file or directory from the one that was there (None: nothing is)."""
    try:
        stat = os.lstat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns


def _interrupted_outcome(dst: Path, before) -> str:
    """What is true of `dst` after an interruption. DST only ever changes by one atomic rename
    of the finished copy, so a changed identity means the new copy is there, complete."""
    after = _identity(dst)
    if after is not None and after != before:
        return f"interrupted after {dst} was written in full (it is complete and usable)"
    if before is not None:
        return f"interrupted; {dst} was left as it was"
    return f"interrupted; nothing was written ({dst} does not exist)"


def _quantize(checkpoint, dst, targets, threshold, skip, calibrate, overwrite, progress, device,
              min_fraction, cast) -> QuantizeReport:  # fmt: skip
    config = checkpoint.config
    if not checkpoint.is_directory:
        report = QuantizeReport()
        with _progress(checkpoint, progress) as bar:
            _quantize_file(
                checkpoint.files[0], dst, targets, threshold, skip, report, bar, overwrite, cast
            )
        return report

    _clear_stale(dst)
    # Named with the process id (how later runs recognise leftovers) and a random part.
    work = dst.parent / f".{dst.name}.llmint8-partial-{os.getpid()}-{secrets.token_hex(4)}"
    work.mkdir()
    try:
        report = QuantizeReport()
        weight_map: dict[str, str] = {}
        with _progress(checkpoint, progress) as bar:
            for file in checkpoint.files:
                out = work / safetensors_name(file)
                names = _quantize_file(file, out, targets, threshold, skip, report, bar, cast=cast)
                weight_map.update(dict.fromkeys(names, out.name))
        report.not_copied = _copy_side_files(checkpoint, work)
        if config is not None:
            _write_config(config, work, threshold, skip, cast)
        if len(checkpoint.files) > 1:
            _write_index(work, checkpoint.index or {}, weight_map)
        if calibrate is not None:
            from .calibrate import calibrate_directory

            report.calibrated = calibrate_directory(
                work, checkpoint.path, Path(calibrate), weight_map, device, min_fraction, progress
            )
            if len(checkpoint.files) > 1:
                _write_index(work, checkpoint.index or {}, weight_map)
        _replace(work, dst, overwrite)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _check_destination(checkpoint: Checkpoint, dst: Path, overwrite: bool) -> None:
    """Refuses, before any work, a DST that overlaps SRC (the same path, inside it, or holding it
    or one of its weight files, links resolved: replacing DST would delete the source), a DST
    whose directory does not exist, and an existing DST without `overwrite`."""
    parent = dst.parent
    if not parent.is_dir():
        raise UsageError(f"{dst}: its directory {parent} does not exist")
    place = parent.resolve() / dst.name  # where DST's entry sits (DST itself may be a link)
    targets = {place, dst.resolve()}
    sources = {checkpoint.path.parent.resolve() / checkpoint.path.name, checkpoint.path.resolve()}
    for file in checkpoint.files:
        sources |= {file.parent.resolve() / file.name, file.resolve()}
    for target in targets:
        for source in sources:
            if target == source or source in target.parents or target in source.parents:
                raise UsageError(
                    f"{dst}: DST must not overlap SRC {checkpoint.path} (it is, holds or lies "
                    "inside the source); choose a destination outside it"
                )
    if os.path.lexists(dst) and not overwrite:
        raise UsageError(f"{dst}: already exists (pass --overwrite to replace it)")


def _progress(checkpoint: Checkpoint, enabled: bool):
    return tqdm(
        total=checkpoint.total_bytes, unit="B", unit_scale=True, desc="quantizing",
        disable=not enabled, dynamic_ncols=True,
    )  # fmt: skip


def linear_weight_names(checkpoint: Checkpoint, threshold: float, skip) -> set[str]:
    """The weight names a transformers model directory's int8 layers have (see module doc)."""
    purpose = "quantizing a transformers model directory"
    accelerate = require("accelerate", purpose)
    transformers = require("transformers", purpose)

    from ..integrations.transformers import Int8Config, Int8HfQuantizer
    from ..nn import Linear8bitLt

    try:
        config = transformers.AutoConfig.from_pretrained(checkpoint.path)
        architecture = getattr(transformers, (config.architectures or ["AutoModel"])[0], None)
        with accelerate.init_empty_weights():
            if architecture is None or not hasattr(architecture, "_from_config"):
                model = transformers.AutoModel.from_config(config)
            else:
                model = architecture._from_config(config)
    except (ValueError, OSError, KeyError) as err:
        raise UsageError(
            f"{checkpoint.path}: cannot build the model from config.json ({err})"
        ) from None
    quantizer = Int8HfQuantizer(Int8Config(threshold=threshold, skip_modules=skip))
    quantizer._process_model_before_weight_loading(model)
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, Linear8bitLt)}


def is_target(tensor: RawTensor, targets: Optional[set[str]], skip) -> bool:
    """Whether `tensor` is the weight of a layer to quantize; `UnsupportedDtypeError` for such a
    weight in a dtype llmint8 does not quantize (int8 weights pass through as they are)."""
    if len(tensor.shape) != 2 or tensor.dtype == "int8":
        return False
    if targets is not None:
        wanted = tensor.name in targets
    else:
        module = tensor.name.removesuffix(".weight")
        skipped = matches_module(module, DEFAULT_SKIP if skip is None else skip)
        wanted = tensor.name.endswith(".weight") and not skipped
    if wanted and tensor.dtype not in FLOAT_DTYPES:
        raise UnsupportedDtypeError(
            f"{tensor.name}: {tensor.dtype} weights cannot be quantized (llmint8 quantizes "
            f"{', '.join(FLOAT_DTYPES)})"
        )
    return wanted


def _check_targets(checkpoint: Checkpoint, targets: Optional[set[str]], skip) -> None:
    """From the headers alone, before anything is written: the weights to quantize exist and
    have dtypes llmint8 quantizes."""
    found = 0
    for name, dtype, shape in checkpoint.tensor_headers():
        found += is_target(RawTensor(name, dtype, shape, np.empty(0)), targets, skip)
    if not found:
        raise UsageError(
            f"{checkpoint.path}: no linear layer weights to quantize (2-D floating-point "
            "*.weight tensors not skipped)"
        )


def _quantize_file(src, dst, targets, threshold, skip, report, bar, overwrite=True,
                   cast=None) -> list[str]:  # fmt: skip
    """Quantizes one safetensors file into `dst`; returns the names written. Without `overwrite`
    an existing `dst` (also one created meanwhile) is refused; `cast` is the dtype of the
    floating-point tensors left as they are (None: unchanged)."""
    tensors, _ = read_tensors(src)
    entries, layers, dtypes = [], {}, set()
    for tensor in tensors:
        report.tensors += 1
        report.bytes_in += tensor.raw.nbytes
        if is_target(tensor, targets, skip):
            module = tensor.name.removesuffix(".weight")
            CB, SCB = F.quantize_weight(tensor.to_torch())
            F.refuse_nonfinite_rows(SCB, tensor.name)
            entries += [
                RawTensor.of(tensor.name, CB).entry(),
                RawTensor.of(f"{module}.{SCB_KEY}", SCB).entry(),
                RawTensor.of(
                    f"{module}.{WEIGHT_FORMAT_KEY}", torch.tensor(ROW_MAJOR, dtype=torch.uint8)
                ).entry(),
            ]
            layers[module] = {"threshold": threshold, "has_fp16_weights": False}
            dtypes.add(tensor.dtype)
            report.layers.append(module)
        elif cast is not None and tensor.dtype in CASTABLE_DTYPES:
            entries.append(RawTensor.of(tensor.name, _cast(tensor, cast)).entry())
        else:
            entries.append(tensor.entry())
        bar.update(tensor.raw.nbytes)
        bar.set_postfix(tensors=report.tensors, refresh=False)
    metadata = {
        THRESHOLD_KEY: str(threshold),
        LAYERS_KEY: json.dumps(layers, sort_keys=True),
        ORIGINAL_DTYPE_KEY: dtypes.pop() if len(dtypes) == 1 else "",
        SKIPPED_KEY: json.dumps([]),
    }
    try:
        _core.write_checkpoint(os.fspath(dst), entries, metadata, overwrite)
    except FileExistsError:
        raise UsageError(f"{dst}: already exists (pass --overwrite to replace it)") from None
    report.files += 1
    report.bytes_out += Path(dst).stat().st_size
    return [e[0] for e in entries]


def _copy_side_files(checkpoint: Checkpoint, work: Path) -> list[str]:
    """Copies tokenizer files, generation config and the like (everything that is not weights)
    into `work` as regular files; returns what was left out: links whose target lies outside
    SRC's directory (or, in the Hugging Face cache layout, outside the model's repository
    folder: `repository_root`), never followed, and files that are neither regular files nor
    directories."""
    weights = {f.name for f in checkpoint.files} | {INDEX_FILE, TORCH_INDEX_FILE, CONFIG_FILE}
    home, root = checkpoint.path.resolve(), repository_root(checkpoint.path)
    left_out: list[str] = []
    for item in sorted(checkpoint.path.iterdir()):
        if item.name in weights or item.name.startswith("."):
            continue
        _copy_inside(item, work / item.name, (home, root), item.name, {home}, left_out)
    return left_out


def _copy_inside(item: Path, target: Path, roots, shown: str, above: set, left_out) -> None:
    """Copies `item` to `target`; a link is followed only to a file inside the repository root
    or a directory inside the checkpoint directory (`roots`); `above` are the real directories
    already being copied (a link to one of them would loop)."""
    home, root = roots
    real = item.resolve()
    if item.is_symlink() and not real.is_relative_to(root if real.is_file() else home):
        left_out.append(f"{shown} (a link out of the model directory)")
    elif item.is_dir():
        if real in above:
            left_out.append(f"{shown} (a link to a directory above it)")
            return
        target.mkdir()
        for child in sorted(item.iterdir()):
            _copy_inside(child, target / child.name, roots, f"{shown}/{child.name}",
                         above | {real}, left_out)  # fmt: skip
    elif item.is_file():
        shutil.copyfile(real, target)
    else:
        left_out.append(f"{shown} (not a regular file)")


def _cast(tensor: RawTensor, dtype: torch.dtype) -> torch.Tensor:
    """`tensor` in `dtype`; `UsageError` naming it when a finite value does not fit (float16
    holds at most 65504)."""
    source = tensor.to_torch()
    cast = source.to(dtype)
    if bool((torch.isfinite(source) & ~torch.isfinite(cast)).any()):
        raise UsageError(
            f"--dtype {str(dtype).removeprefix('torch.')}: {tensor.name} holds values beyond its "
            "range; choose bfloat16 or float32"
        )
    return cast


def _write_config(config: dict, work: Path, threshold: float, skip, cast=None) -> None:
    from ..integrations.transformers import Int8Config

    config = dict(config)
    if cast is not None:  # the dtype transformers gives the floating-point tensors on load
        config["dtype"] = str(cast).removeprefix("torch.")
        config.pop("torch_dtype", None)
    config["quantization_config"] = Int8Config(threshold=threshold, skip_modules=skip).to_dict()
    (work / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _write_index(work: Path, index: dict, weight_map: dict[str, str]) -> None:
    total = sum((work / name).stat().st_size for name in set(weight_map.values()))
    metadata = {**index.get("metadata", {}), "total_size": total}
    content = {"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}
    (work / INDEX_FILE).write_text(json.dumps(content, indent=2) + "\n")


def _replace(work: Path, dst: Path, overwrite: bool) -> None:
    """Puts the finished directory at `dst`. Without `overwrite` only if nothing is there, in one
    step (so of two racing runs one wins and the other is refused). An existing `dst` (with
    --overwrite) is swapped out in one atomic step where the kernel offers it (Linux renameat2
    RENAME_EXCHANGE), so that at every instant `dst` is either the old complete copy or the new
    one; then removed."""
    if not overwrite:
        if not _rename2(work, dst, _RENAME_NOREPLACE):
            if os.path.lexists(dst):
                raise UsageError(f"{dst}: already exists (pass --overwrite to replace it)")
            os.rename(work, dst)  # no renameat2 here: the up-front check is all there is
        return
    if not os.path.lexists(dst):
        os.replace(work, dst)
        return
    if _rename2(work, dst, _RENAME_EXCHANGE):
        _remove(work)  # now holds the old copy
        return
    old = dst.parent / f".{dst.name}.llmint8-old-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(dst, old)
    os.replace(work, dst)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


def _rename2(a: Path, b: Path, flag: int) -> bool:
    """Linux renameat2 (>= 3.15): True when it moved `a` to `b` under `flag`; False where it is
    not available. Fails with the OS error otherwise (e.g. EEXIST for NOREPLACE: a UsageError)."""
    import ctypes
    import ctypes.util
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), flag) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False  # the file system does not support it
    if code == errno.EEXIST and flag == _RENAME_NOREPLACE:
        raise UsageError(f"{b}: already exists (pass --overwrite to replace it)")
    raise OSError(code, os.strerror(code), os.fspath(b))


def _clear_stale(dst: Path) -> None:
    """Removes what killed runs left beside `dst` (work directories, swapped-out copies)."""
    for kind in ("partial", "old"):
        clear_leftovers(dst.parent, f".{dst.name}.llmint8-{kind}-")
