"""Linear8bitLt and Int8Params on the CPU: the API contract of the design."""

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import llmint8
from llmint8 import functional as F
from llmint8.nn import Int8Params, Linear8bitLt

from ..helpers import (
    assert_within_bound,
    dequantization_bound,
    int8_linear_bound,
    planted_outliers,
    reference_linear,
)


def make_pair(in_features=32, out_features=16, threshold=6.0, has_fp16_weights=False, seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features).half()
    layer = Linear8bitLt(
        in_features, out_features, has_fp16_weights=has_fp16_weights, threshold=threshold
    )
    layer.load_state_dict(linear.state_dict())
    return linear, layer


@pytest.fixture
def quantize_calls(monkeypatch):
    calls = []
    original = F.quantize_weight

    def counting(weight):
        calls.append(tuple(weight.shape))
        return original(weight)

    monkeypatch.setattr(F, "quantize_weight", counting)
    return calls


def test_quantizes_once_on_first_move(quantize_calls):
    _, layer = make_pair()
    assert layer.weight.dtype == torch.float32 and not layer.weight.is_int8
    layer = layer.to("cpu")
    assert layer.weight.dtype == torch.int8 and layer.weight.is_int8
    CB = layer.weight.CB.clone()
    for move in (
        lambda m: m.to("cpu"),
        lambda m: m.cpu(),
        lambda m: m.half(),
        lambda m: m.to(torch.float16),
        lambda m: m.float(),
    ):
        layer = move(layer)
    layer(torch.randn(3, 32, dtype=torch.float16))
    assert quantize_calls == [(16, 32)]
    assert torch.equal(layer.weight.CB, CB)
    assert layer.weight.SCB.dtype == torch.float32  # .half() never touches the statistics


@given(
    repeats=st.integers(1, 5),
    ops=st.lists(st.sampled_from(["to", "cpu", "half", "forward"]), max_size=6),
)
def test_quantize_once_under_any_sequence_of_moves(repeats, ops):
    calls = []
    original = F.quantize_weight

    def counting(weight):
        calls.append(1)
        return original(weight)

    F.quantize_weight = counting
    try:
        _, layer = make_pair()
        for _ in range(repeats):
            for op in ops:
                if op == "to":
                    layer = layer.to("cpu")
                elif op == "cpu":
                    layer = layer.cpu()
                elif op == "half":
                    layer = layer.half()
                else:
                    layer(torch.randn(2, 32, dtype=torch.float16))
        layer = layer.to("cpu")
        assert len(calls) == 1
    finally:
        F.quantize_weight = original


def test_forward_is_within_the_quantization_bound(rng):
    linear, layer = make_pair(64, 24)
    layer = layer.to("cpu")
    x, _ = planted_outliers(10, 64, 3, rng)
    x = x.half()
    w, b = linear.weight.detach(), linear.bias.detach()
    assert_within_bound(
        layer(x), reference_linear(x, w, b), int8_linear_bound(x, w, 6.0, x.dtype, b)
    )


def test_cb_and_scb_restore_the_weight():
    linear, layer = make_pair()
    layer = layer.to("cpu")
    restored = layer.weight.CB.float() * layer.weight.SCB[:, None] / 127
    w = linear.weight.detach().float()
    bound = dequantization_bound(w.abs().amax(dim=1), w)
    assert_within_bound(restored, w, bound, "CB * SCB / 127")


def test_int8_state_dict_round_trip_is_bit_exact():
    _, layer = make_pair()
    layer = layer.to("cpu")
    state = layer.state_dict()
    assert set(state) == {"weight", "bias", "SCB", "weight_format"}
    for target in (
        Linear8bitLt(32, 16, has_fp16_weights=False, threshold=6.0),  # before any move
        Linear8bitLt(32, 16, has_fp16_weights=False, threshold=6.0).to("cpu"),  # after a move
    ):
        target.load_state_dict(state)
        assert torch.equal(target.weight.CB, state["weight"])
        assert torch.equal(target.weight.SCB, state["SCB"])
        x = torch.randn(4, 32, dtype=torch.float16)
        assert torch.equal(target(x), layer(x))


def test_state_dict_loads_after_a_forward():
    _, layer = make_pair()
    layer(torch.randn(2, 32, dtype=torch.float16))
    other_linear, _ = make_pair(seed=1)
    layer.load_state_dict(other_linear.state_dict())  # fp16 weights into a quantized layer
    expected, _ = F.quantize_weight(other_linear.weight.detach())
    assert torch.equal(layer.weight.CB, expected)


def test_has_fp16_weights_trains_the_master_weight(rng):
    _, layer = make_pair(has_fp16_weights=True)
    layer = layer.float().to("cpu")
    assert layer.weight.dtype == torch.float32 and layer.weight.requires_grad
    x = torch.randn(6, 32, generator=rng, requires_grad=True)
    y = layer(x)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    w = layer.weight.detach().clone()
    torch.testing.assert_close(layer.weight.grad, grad_out.t() @ x.detach())
    torch.testing.assert_close(layer.bias.grad, grad_out.sum(0))
    torch.testing.assert_close(x.grad, grad_out @ w)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    optimizer.step()
    assert not torch.equal(layer.weight.detach(), w)


def test_int8_weights_pass_gradients_to_the_input(rng):
    _, layer = make_pair()
    layer = layer.to("cpu")
    assert not layer.weight.requires_grad
    x = torch.randn(5, 32, generator=rng, dtype=torch.float16, requires_grad=True)
    layer(x).float().sum().backward()
    expected = F.dequantize_rowwise(layer.weight.CB, layer.weight.SCB).sum(0)
    torch.testing.assert_close(x.grad.float(), expected.expand(5, -1), rtol=1e-3, atol=1e-3)


def test_bfloat16_and_float32_inputs(rng):
    linear, layer = make_pair()
    layer = layer.to("cpu")
    w, b = linear.weight.detach(), linear.bias.detach()
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(3, 7, 32, generator=rng).to(dtype)
        y = layer(x)
        assert y.dtype == dtype and y.shape == (3, 7, 16)
        flat = x.reshape(21, 32)
        bound = int8_linear_bound(flat, w, 6.0, dtype, b)
        assert_within_bound(y.reshape(21, 16), reference_linear(flat, w, b), bound)


def test_meta_device_keeps_int8_params():
    with torch.device("meta"):
        layer = Linear8bitLt(32, 16, has_fp16_weights=False, threshold=6.0)
    assert isinstance(layer.weight, Int8Params) and layer.weight.device.type == "meta"
    layer = layer.to("meta")
    assert isinstance(layer.weight, Int8Params) and not layer.weight.is_int8
    with pytest.raises(RuntimeError, match="meta"):
        layer(torch.randn(2, 32))


def test_deepcopy_keeps_statistics():
    _, layer = make_pair()
    layer = layer.to("cpu")
    clone = copy.deepcopy(layer)
    assert torch.equal(clone.weight.SCB, layer.weight.SCB)
    assert clone.weight.data_ptr() != layer.weight.data_ptr()
    x = torch.randn(2, 32, dtype=torch.float16)
    assert torch.equal(clone(x), layer(x))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s: s.update(weight=s["weight"][:, :-1]), "shape"),
        (lambda s: s.update(SCB=s["SCB"][:-1]), "SCB"),
        (lambda s: s.update(SCB=s["SCB"].double()), "SCB"),
        (lambda s: s.update(SCB=torch.full_like(s["SCB"], float("nan"))), "finite"),
        (lambda s: s.update(weight_format=torch.tensor(2, dtype=torch.uint8)), "weight_format"),
        (lambda s: s.pop("SCB"), "row scales"),
        (lambda s: s.update(weight=s["weight"].int()), "weight"),
        (lambda s: s.pop("weight"), "without their weight"),
        (lambda s: s.update(outlier_cols=torch.tensor([40], dtype=torch.int32)), "outlier_cols"),
        (lambda s: s.update(outlier_cols=torch.tensor([3, 1], dtype=torch.int32)), "ascending"),
    ],
)
def test_bad_state_dicts_raise_format_error(mutate, match):
    _, layer = make_pair()
    state = layer.to("cpu").state_dict()
    mutate(state)
    target = Linear8bitLt(32, 16, has_fp16_weights=False, threshold=6.0)
    with pytest.raises(llmint8.FormatError, match=match):
        target.load_state_dict(state)


def test_fp16_state_dict_with_wrong_shape_is_a_format_error():
    target = Linear8bitLt(32, 16, has_fp16_weights=False)
    with pytest.raises(llmint8.FormatError, match="shape"):
        target.load_state_dict(nn.Linear(31, 16).state_dict())


def test_non_finite_weights_are_refused_at_quantization():
    _, layer = make_pair()
    with torch.no_grad():
        layer.weight[3, 4] = float("inf")
    with pytest.raises(llmint8.QuantizationError, match=r"\[3\]"):
        layer.to("cpu")


def test_wrong_device_and_dtype_inputs_are_named_errors():
    _, layer = make_pair()
    layer = layer.to("cpu")
    with pytest.raises(llmint8.UnsupportedDtypeError):
        layer(torch.ones(2, 32, dtype=torch.int64))
    with pytest.raises(ValueError, match="features"):
        layer(torch.ones(2, 31))
    with pytest.raises(llmint8.DeviceMismatchError, match="one device"):
        layer(torch.ones(2, 32, device="meta"))


def test_static_outlier_columns_are_used_and_saved(rng):
    linear, layer = make_pair(64, 8, threshold=0.0)
    layer = layer.to("cpu")
    x, columns = planted_outliers(12, 64, 3, rng)
    layer.set_outlier_columns([*columns.tolist(), int(columns[0])])
    assert (
        layer.outlier_cols.dtype == torch.int32 and layer.outlier_cols.tolist() == columns.tolist()
    )
    w, b = linear.weight.detach(), linear.bias.detach()
    bound = int8_linear_bound(x, w, 0.0, x.dtype, b, outlier_cols=columns)
    assert_within_bound(layer(x), reference_linear(x, w, b), bound)
    state = layer.state_dict()
    assert torch.equal(state["outlier_cols"], layer.outlier_cols)
    fresh = Linear8bitLt(64, 8, has_fp16_weights=False)
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x), layer(x))
    with pytest.raises(llmint8.OutlierError):
        layer.set_outlier_columns([64])
