"""Files the commands write besides checkpoints (tables, charts): checked before the work starts,
written under a temporary name and renamed, so an interrupted or failed command leaves either
nothing or the whole file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from . import UsageError


def check_output_path(path: os.PathLike, option: str, suffix: Optional[str] = None) -> Path:
    """`UsageError` naming `option` unless `path` can be written: its directory exists, it is not
    a directory itself, and it ends in `suffix` (when given)."""
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise UsageError(f"{option} {path}: expected a {suffix} file name")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: its directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{option} {path}: its directory {path.parent} is not writable")
    return path


def write_atomically(path: os.PathLike, write: Callable[[Path], None]) -> None:
    """Calls `write(temporary)` for a temporary path beside `path`, then renames it to `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
