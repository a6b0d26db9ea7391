"""Calibration: record which input columns of each int8 layer are outliers on real data, and fix
the frequent ones as static outlier columns (skipping per-call detection)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from . import _core
from .nn import Linear8bitLt


class OutlierCalibrator:
    """Context manager that counts, per `Linear8bitLt` of `model`, the batches in which each input
    column held an ``|x| >= threshold`` (the layer's own threshold unless one is given).

    >>> with OutlierCalibrator(model) as calibration:
    ...     for batch in batches:
    ...         model(batch)
    >>> calibration.apply(min_fraction=0.5)   # static columns: outliers in >= half the batches
    """

    def __init__(self, model: nn.Module, threshold: Optional[float] = None) -> None:
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, Linear8bitLt)}
        self.threshold = threshold
        self.stats = {name: _core.OutlierStats(m.in_features) for name, m in self.layers.items()}
        self._hooks: list = []

    def __enter__(self) -> OutlierCalibrator:
        for name, layer in self.layers.items():
            self._hooks.append(layer.register_forward_pre_hook(self._recorder(name, layer)))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def _recorder(self, name: str, layer: Linear8bitLt):
        threshold = layer.threshold if self.threshold is None else self.threshold

        def record(module: nn.Module, args: tuple) -> None:
            x = args[0]
            if threshold <= 0 or x.numel() == 0:
                mask = np.zeros(layer.in_features, dtype=bool)
            else:
                with torch.no_grad():
                    is_outlier = (x.reshape(-1, x.shape[-1]).abs() >= threshold).any(dim=0)
                mask = is_outlier.cpu().numpy()
            self.stats[name].observe_mask(mask)

        return record

    def apply(self, min_fraction: float = 0.5) -> dict[str, int]:
        """Sets each layer's static outlier columns to those seen in at least `min_fraction` of the
        batches and stores the counts; returns the number of columns per layer."""
        chosen = {}
        for name, layer in self.layers.items():
            stats = self.stats[name]
            columns = stats.static_columns(min_fraction)
            layer.set_outlier_columns(torch.from_numpy(columns))
            device = layer.outlier_cols.device
            layer.outlier_counts = torch.from_numpy(stats.counts()).to(device)
            layer.outlier_batches = torch.tensor(stats.batches, dtype=torch.int64, device=device)
            chosen[name] = len(columns)
        return chosen
