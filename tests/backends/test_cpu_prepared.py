"""The CPU backend's prepared forward (`cpu.prepare_linear`): the core's forward with the checks
and the operands' views done once. It gives the bits of the general forward, reads the weight,
scales and bias where they lie, and declines what it does not serve."""

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import llmint8
from llmint8 import functional as F
from llmint8.backends import cpu
from llmint8.nn import Linear8bitLt


def _layer_operands(seed, k, n, bias_dtype):
    generator = torch.Generator().manual_seed(seed)
    CB, SCB = F.quantize_weight(torch.randn(n, k, generator=generator))
    bias = None if bias_dtype is None else torch.randn(n, generator=generator).to(bias_dtype)
    return generator, CB, SCB, bias


def _inputs(generator, shape, dtype, planted):
    x = torch.randn(shape, generator=generator) * 2
    if planted and shape[-1] > 3:
        x[..., [1, shape[-1] - 2]] *= 20  # outlier columns in (nearly) every call
    return x.to(dtype)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lead=st.sampled_from([(1,), (3,), (2, 5), (17,)]),
    k=st.sampled_from([1, 16, 100, 1040]),
    n=st.integers(1, 90),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    bias_dtype=st.sampled_from([None, torch.float32, torch.float16, torch.bfloat16]),
    threshold=st.sampled_from([0.0, 1.5, 6.0]),
    planted=st.booleans(),
    arithmetic=st.sampled_from(["int8", "auto"]),
)
def test_the_prepared_forward_gives_the_general_forwards_bits(
    seed, lead, k, n, dtype, bias_dtype, threshold, planted, arithmetic
):
    generator, CB, SCB, bias = _layer_operands(seed, k, n, bias_dtype)
    first = _inputs(generator, (*lead, k), dtype, planted)
    prepared = cpu.prepare_linear(first, CB, SCB, bias, threshold, None, arithmetic)
    assert prepared is not None
    for _ in range(2):  # fresh inputs of the prepared shape
        x = _inputs(generator, (*lead, k), dtype, planted)
        got = prepared(x)
        want = F.int8_linear(x, CB, SCB, bias, threshold, None, None, arithmetic)
        assert got.shape == want.shape == (*lead, n) and got.dtype == want.dtype == dtype
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_the_prepared_forward_reads_its_operands_where_they_lie():
    generator, CB, SCB, bias = _layer_operands(7, 64, 24, torch.float16)
    x = _inputs(generator, (2, 64), torch.float32, True)
    prepared = cpu.prepare_linear(x, CB, SCB, bias, 6.0, None, "int8")
    CB[3].neg_()
    SCB.mul_(1.5)
    bias.add_(1.0)
    want = F.int8_linear(x, CB, SCB, bias, 6.0)
    assert torch.equal(prepared(x), want)


def test_the_prepared_forward_takes_inputs_that_require_grad():
    generator, CB, SCB, bias = _layer_operands(3, 32, 8, None)
    x = _inputs(generator, (4, 32), torch.float32, False).requires_grad_()
    prepared = cpu.prepare_linear(x, CB, SCB, bias, 6.0, None, "int8")
    with torch.no_grad():
        got = prepared(x)
    assert not got.requires_grad
    assert torch.equal(got, F.int8_linear(x.detach(), CB, SCB, bias, 6.0))


def test_what_the_prepared_forward_declines():
    generator, CB, SCB, bias = _layer_operands(5, 32, 8, torch.float32)
    x = _inputs(generator, (2, 32), torch.float32, False)
    static = torch.tensor([1, 4])
    assert cpu.prepare_linear(x, CB, SCB, bias, 6.0, None, "weight_only") is None
    assert cpu.prepare_linear(x, CB, SCB, bias, 6.0, static, "int8") is None
    assert cpu.prepare_linear(torch.empty(0, 32), CB, SCB, bias, 6.0, None, "int8") is None
    strided = torch.randn(32, 8).t()
    assert cpu.prepare_linear(x, strided.to(torch.int8), SCB, bias, 6.0, None, "int8") is None
    assert cpu.prepare_linear(x.double(), CB, SCB, bias, 6.0, None, "int8") is None
    with mock.patch.object(cpu, "uses_core_product", lambda m, n, k: False):
        assert cpu.prepare_linear(x, CB, SCB, bias, 6.0, None, "int8") is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_cpu_layer_forwards_through_its_prepared_call(dtype):
    """Linear8bitLt on the CPU (int8 weights) prepares its forward once per input shape and
    gives the general forward's bits."""
    torch.manual_seed(0)
    layer = Linear8bitLt.from_linear(nn_linear(48, 20), has_fp16_weights=False, threshold=6.0)
    layer = layer.to(dtype)
    x = (torch.randn(3, 48) * 4).to(dtype)
    with torch.no_grad():
        layer(x)  # quantizes the weight
        calls = []
        real = llmint8._core.int8_linear
        with mock.patch.object(
            llmint8._core, "int8_linear", lambda *a: calls.append(1) or real(*a)
        ):
            got = layer(x)
        want = F.int8_linear(x, layer.weight, layer.weight.SCB, layer.bias, 6.0)
    assert calls and len(layer._prepared_forwards) == 1
    assert torch.equal(got, want)


def nn_linear(k, n):
    return torch.nn.Linear(k, n)
