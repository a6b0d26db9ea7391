"""The weight-only arithmetic (activations in floating point times the dequantized weight) and the
choice between it and LLM.int8() (`arithmetic`), on the CPU backend."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import llmint8
from llmint8 import functional as F
from llmint8.backends import cpu as cpu_backend
from llmint8.nn import Linear8bitLt

from .helpers import assert_within_bound, planted_outliers, reference_linear, weight_only_bound


def _layer_inputs(seed, m, k, n, dtype):
    generator = torch.Generator().manual_seed(seed)
    x, _ = planted_outliers(m, k, min(3, k), generator)
    weight = torch.randn(n, k, generator=generator)
    bias = torch.randn(n, generator=generator)
    return x.to(dtype), weight.to(dtype), bias.to(dtype)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    m=st.integers(1, 40),
    k=st.sampled_from([1, 7, 64, 100, 1100]),
    n=st.sampled_from([1, 3, 64, 1500]),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
    with_bias=st.booleans(),
)
def test_weight_only_matches_the_float64_product_with_the_dequantized_weight(
    seed, m, k, n, dtype, with_bias
):
    x, weight, bias = _layer_inputs(seed, m, k, n, dtype)
    bias = bias if with_bias else None
    CB, SCB = F.quantize_weight(weight)
    got = F.int8_linear(x, CB, SCB, bias, 6.0, arithmetic="weight_only")
    assert got.dtype == dtype and got.shape == (m, n)
    dequantized = CB.double() * (SCB.double()[:, None] / 127)
    expected = reference_linear(x, dequantized, bias)
    assert_within_bound(got, expected, weight_only_bound(x, CB, SCB, dtype, bias), "weight-only")


def test_weight_only_error_is_below_llm_int8s():
    # 6 systematic outlier features: LLM.int8() keeps them in floating point and quantizes the
    # rest of each row; weight-only quantizes no activation at all.
    x, weight, bias = _layer_inputs(3, 64, 1024, 512, torch.float32)
    CB, SCB = F.quantize_weight(weight)
    exact = reference_linear(x, weight, bias)

    def error(arithmetic):
        y = F.int8_linear(x, CB, SCB, bias, 6.0, arithmetic=arithmetic)
        return ((y.double() - exact).norm() / exact.norm()).item()

    int8, weight_only = error("int8"), error("weight_only")
    assert weight_only < 0.9 * int8, (weight_only, int8)


def test_auto_on_the_cpu_is_llm_int8_bit_for_bit():
    x, weight, bias = _layer_inputs(5, 9, 300, 70, torch.float16)
    CB, SCB = F.quantize_weight(weight)
    auto = F.int8_linear(x, CB, SCB, bias, 6.0)
    assert torch.equal(auto, cpu_backend.int8_linear(x, CB, SCB, bias, 6.0, None))
    assert not cpu_backend.prefers_weight_only(x, CB)


def test_weight_only_dequantizes_a_block_of_rows_at_a_time(monkeypatch):
    monkeypatch.setattr(cpu_backend, "WEIGHT_ONLY_ROWS_PER_STEP", 7)
    x, weight, bias = _layer_inputs(6, 5, 64, 30, torch.float32)
    CB, SCB = F.quantize_weight(weight)
    blocked = cpu_backend.weight_only_linear(x, CB, SCB, bias)
    dequantized = CB.float() * (SCB[:, None] / 127)
    torch.testing.assert_close(blocked, x @ dequantized.t() + bias, rtol=1e-6, atol=1e-5)


def test_layers_take_and_show_their_arithmetic():
    linear = nn.Linear(32, 8)
    layer = Linear8bitLt.from_linear(linear, 6.0, arithmetic="weight_only").to("cpu")
    assert layer.arithmetic == "weight_only" and "arithmetic='weight_only'" in repr(layer)
    x = torch.randn(3, 32)
    expected = F.int8_linear(x, layer.weight.CB, layer.weight.SCB, layer.bias, 6.0,
                             arithmetic="weight_only")  # fmt: skip
    assert torch.equal(layer(x), expected)
    layer.arithmetic = "int8"
    assert torch.equal(layer(x), cpu_backend.int8_linear(
        x, layer.weight.CB, layer.weight.SCB, layer.bias, 6.0, None))  # fmt: skip
    model = llmint8.replace_linear(nn.Sequential(nn.Linear(4, 4)), arithmetic="int8")
    assert model[0].arithmetic == "int8"
    assert Linear8bitLt(4, 4).arithmetic == "auto"


def test_weight_only_state_dicts_are_those_of_any_layer():
    layer = Linear8bitLt(16, 4, has_fp16_weights=False, arithmetic="weight_only").to("cpu")
    other = Linear8bitLt(16, 4, has_fp16_weights=False).to("cpu")
    other.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == set(other.state_dict())
    assert other.arithmetic == "auto"  # a runtime choice, not saved


@pytest.mark.parametrize("bad", ["fast", "INT8", "", None, 8])
def test_an_unknown_arithmetic_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="arithmetic must be one of auto, int8, weight_only"):
        Linear8bitLt(4, 4, arithmetic=bad)
    with pytest.raises(ValueError, match="arithmetic"):
        llmint8.replace_linear(nn.Linear(4, 4), arithmetic=bad)
    with pytest.raises(ValueError, match="arithmetic"):
        F.int8_linear(torch.randn(2, 4), *F.quantize_weight(torch.randn(3, 4)), arithmetic=bad)


def test_weight_only_gradients_equal_llm_int8s():
    """Backward multiplies by the dequantized weight in either arithmetic."""
    layer = Linear8bitLt(24, 10, has_fp16_weights=False, threshold=6.0).to("cpu")
    grads = {}
    for arithmetic in ("int8", "weight_only"):
        layer.arithmetic = arithmetic
        x = torch.randn(4, 24, generator=torch.Generator().manual_seed(0), requires_grad=True)
        layer(x).sum().backward()
        grads[arithmetic] = x.grad
    assert torch.equal(grads["int8"], grads["weight_only"])


def test_weight_only_through_the_compiled_custom_op_equals_eager():
    torch._dynamo.reset()
    layer = Linear8bitLt(48, 16, has_fp16_weights=False, arithmetic="weight_only").to("cpu")
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(5, 48)
    with torch.no_grad():
        assert torch.equal(compiled(x), layer(x))
