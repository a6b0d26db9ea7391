"""Linear8bitLt's prepared forwards (`functional.prepared_linear`): when a layer uses one, and
when it prepares again. The backend's side (the CUDA launch) is tested on the GPU in
tests/backends/test_cuda.py; here a recording stand-in takes its place."""

import copy

import pytest
import torch
from torch import nn

from llmint8 import functional as F
from llmint8.nn import Linear8bitLt


class Recorder:
    """Stands in for `F.prepared_linear`: each preparation is recorded, and its call runs the
    general `F.int8_linear` with the operands it was prepared with (as the real one reads the
    weight where it lay when prepared)."""

    def __init__(self):
        self.prepared, self.calls = [], 0

    def __call__(self, x, CB, SCB, bias, threshold, outlier_cols, arithmetic):
        self.prepared.append((tuple(x.shape), x.dtype, arithmetic))

        def run(x_call):
            self.calls += 1
            return F.int8_linear(x_call, CB, SCB, bias, threshold, outlier_cols, None, arithmetic)

        return run


@pytest.fixture
def recorder(monkeypatch):
    found = Recorder()
    monkeypatch.setattr(F, "prepared_linear", found)
    return found


def make_layer(seed=0, in_features=64, out_features=24):
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features)
    layer = Linear8bitLt(in_features, out_features, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict(linear.state_dict())
    layer.weight.quantize_()
    return layer


def general(layer, x):
    weight = layer.weight
    return F.int8_linear(x, weight, weight.SCB, layer.bias, layer.threshold, None, None,
                         layer.arithmetic)  # fmt: skip


def test_a_layer_prepares_once_per_input_shape_and_reuses_it(recorder):
    layer = make_layer()
    x = torch.randn(3, 64)
    with torch.no_grad():
        first, second = layer(x), layer(torch.randn(3, 64))
        layer(torch.randn(2, 5, 64))
    assert recorder.prepared == [
        ((3, 64), torch.float32, "auto"),
        ((2, 5, 64), torch.float32, "auto"),
    ]
    assert recorder.calls == 3
    assert torch.equal(first, general(layer, x))
    assert second.shape == (3, 24)


def test_no_prepared_forward_where_gradients_are_needed_or_x_is_strided(recorder):
    layer = make_layer()
    x = torch.randn(4, 64)
    y = layer(x)  # grad mode on and the bias trains: autograd's path
    assert y.requires_grad and recorder.calls == 0
    with torch.no_grad():
        strided = torch.randn(64, 4).t()
        assert torch.equal(layer(strided), general(layer, strided))
    assert recorder.prepared == [] and recorder.calls == 0
    layer.bias.requires_grad_(False)
    layer(x)  # nothing trains now: no gradient needed, so the prepared call serves
    assert recorder.calls == 1


def test_a_layer_prepares_again_when_its_tensors_are_replaced_or_moved(recorder):
    layer = make_layer(seed=1)
    x = torch.randn(2, 64)
    with torch.no_grad():
        layer(x)
        layer.load_state_dict(make_layer(seed=2).state_dict())  # new int8 rows, scales and bias
        reloaded = layer(x)
        assert torch.equal(reloaded, general(layer, x))
        assert len(recorder.prepared) == 2
        layer.bias = nn.Parameter(torch.randn(24))
        assert torch.equal(layer(x), general(layer, x))
        layer.double()  # _apply: every prepared forward is dropped
        assert "_prepared_forwards" not in layer.__dict__
        layer.float()
        layer(x)
    assert len(recorder.prepared) == 4


def test_arithmetic_and_dtype_are_part_of_the_key(recorder):
    layer = make_layer()
    with torch.no_grad():
        layer(torch.randn(2, 64))
        layer.arithmetic = "int8"
        layer(torch.randn(2, 64))
        layer(torch.randn(2, 64))
        layer(torch.randn(2, 64, dtype=torch.bfloat16))
    assert [p[1:] for p in recorder.prepared] == [
        (torch.float32, "auto"), (torch.float32, "int8"), (torch.bfloat16, "int8")]  # fmt: skip


def test_threshold_and_static_columns_are_part_of_the_key(recorder):
    """An LLM.int8() forward is prepared with the threshold and without static outlier columns:
    changing either prepares again, so no call runs with the old ones."""
    layer = make_layer()
    layer.arithmetic = "int8"
    x = torch.randn(4, 64)
    x[:, 3] *= 40  # an outlier column at threshold 6, not at 1000
    with torch.no_grad():
        at_six = layer(x)
        layer.threshold = 1000.0
        at_thousand = layer(x)
        layer.outlier_cols = torch.tensor([3, 9], dtype=torch.int32)
        static = layer(x)
    assert len(recorder.prepared) == 3
    layer.outlier_cols = None
    layer.threshold = 6.0
    assert torch.equal(at_six, general(layer, x))
    layer.threshold = 1000.0
    assert torch.equal(at_thousand, general(layer, x))
    assert not torch.equal(at_six, at_thousand)
    weight = layer.weight
    with_static = F.int8_linear(x, weight, weight.SCB, layer.bias, 1000.0,
                                torch.tensor([3, 9], dtype=torch.int32), None, "int8")  # fmt: skip
    assert torch.equal(static, with_static)


def test_copies_of_a_layer_start_without_prepared_forwards(recorder):
    layer = make_layer()
    with torch.no_grad():
        layer(torch.randn(2, 64))
    clone = copy.deepcopy(layer)
    assert len(layer._prepared_forwards) == 1 and len(clone._prepared_forwards) == 0
    with torch.no_grad():
        assert torch.equal(clone(torch.ones(2, 64)), layer(torch.ones(2, 64)))
    assert len(recorder.prepared) == 2


def test_prepared_linear_checks_its_operands():
    layer = make_layer()
    weight = layer.weight
    x = torch.randn(2, 64)
    static = torch.tensor([1, 2])
    assert F.prepared_linear(x, weight, weight.SCB, layer.bias, 6.0, static) is None
    with pytest.raises(ValueError, match="features"):
        F.prepared_linear(torch.randn(2, 63), weight, weight.SCB, layer.bias)
    with pytest.raises(ValueError, match="arithmetic"):
        F.prepared_linear(x, weight, weight.SCB, layer.bias, arithmetic="fast")
