"""Torch modules: `Linear8bitLt` and its weight parameter `Int8Params`."""

from .linear import Linear8bitLt
from .params import Int8Params

__all__ = ["Int8Params", "Linear8bitLt"]
