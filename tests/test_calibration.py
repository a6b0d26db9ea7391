"""OutlierCalibrator: counts outlier columns per layer with the Rust bookkeeping."""

import torch
from torch import nn

import llmint8


def test_calibration_finds_the_planted_columns(tmp_path):
    torch.manual_seed(0)
    model = llmint8.replace_linear(
        nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 8)), threshold=6.0
    )
    model = model.to("cpu")
    planted = [4, 19]
    with llmint8.OutlierCalibrator(model) as calibration:
        for step in range(10):
            x = torch.randn(16, 32)
            x[:, planted] *= 30
            if step == 0:
                x[:, 7] = 50  # a one-off outlier column, seen in 1 of 10 batches
            model(x)
    first = calibration.stats["0"]
    assert first.batches == 10
    assert first.counts()[planted].tolist() == [10, 10] and first.counts()[7] == 1
    chosen = calibration.apply(min_fraction=0.5)
    assert chosen["0"] == 2
    assert model[0].outlier_cols.tolist() == planted
    assert len(model[0]._forward_pre_hooks) == 0  # hooks removed on exit
    path = tmp_path / "calibrated.safetensors"
    llmint8.save_quantized(model, path)
    state, _ = llmint8.load_state_dict(path)
    assert state["0.outlier_cols"].tolist() == planted
    assert state["0.outlier_counts"][planted].tolist() == [10, 10]
    assert int(state["0.outlier_batches"]) == 10
    reloaded = llmint8.load_quantized(nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 8)), path)
    x = torch.randn(4, 32)
    assert torch.equal(reloaded(x), model(x))
