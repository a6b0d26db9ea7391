"""What writers killed mid-way leave beside their destination (temporary files and directories
named with the writer's process id), removed once that process is gone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def clear_leftovers(parent: Path, prefix: str) -> None:
    """Removes entries of `parent` named ``{prefix}{pid}...`` whose process has ended."""
    for leftover in parent.glob(f"{prefix}*"):
        digits = ""
        for char in leftover.name[len(prefix) :]:
            if not char.isdigit():
                break
            digits += char
        if not digits or int(digits) == os.getpid() or process_alive(int(digits)):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
