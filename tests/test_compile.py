"""torch.compile(fullgraph=True) traces through int8 layers (the custom op llmint8::int8_linear
with its fake implementation and autograd formula): no graph break, eager's results."""

import pytest
import torch
from torch import nn

import llmint8


def _model(threshold=6.0):
    torch.manual_seed(21)
    model = nn.Sequential(nn.Linear(48, 80), nn.GELU(), nn.Linear(80, 24))
    return llmint8.replace_linear(model, threshold=threshold).to("cpu").eval()


def _x(*shape):
    x = torch.randn(*shape, 48, generator=torch.Generator().manual_seed(2))
    x[..., [4, 30]] *= 30
    return x


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_compile_matches_eager(backend):
    torch._dynamo.reset()
    # Inductor generates its own GELU (other float rounding), so it gets the int8 layer alone.
    model = _model() if backend == "aot_eager" else _model()[0]
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    with torch.no_grad():
        for x in (_x(7), _x(2, 5), _x(1)):
            assert torch.equal(compiled(x), model(x))


@pytest.mark.parametrize("arithmetic", ["int8", "weight_only"])
def test_the_custom_op_passes_torch_library_checks(arithmetic):
    model = _model()
    layer = model[0]
    args = (_x(6), layer.weight.CB, layer.weight.SCB, layer.bias, 6.0, None, arithmetic)
    torch.library.opcheck(torch.ops.llmint8.int8_linear.default, args)


def test_gradients_through_the_compiled_graph_equal_eager():
    torch._dynamo.reset()
    model = _model()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x1 = _x(5).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    model(x1).square().sum().backward()
    compiled(x2).square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-5)


def test_static_outlier_columns_compile_too():
    torch._dynamo.reset()
    model = _model(threshold=0.0)
    model[0].set_outlier_columns([4, 30])
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        assert torch.equal(compiled(_x(3)), model(_x(3)))


@pytest.mark.gpu
def test_fullgraph_compile_on_gpu_matches_eager():
    torch._dynamo.reset()
    model = _model().half().cuda()
    # Inductor fuses its own GELU (other fp16 rounding): the int8 layer alone must match bit for
    # bit, the whole model to fp16 rounding of the activation.
    layer = model[0]
    compiled_layer = torch.compile(layer, fullgraph=True)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for x in (_x(1), _x(16), _x(300)):
            x = x.half().cuda()
            assert torch.equal(compiled_layer(x), layer(x))
            torch.testing.assert_close(compiled(x), model(x), rtol=2e-3, atol=2e-3)


def test_the_custom_op_keeps_no_scratch_memory_past_the_call(monkeypatch):
    """Compiled graphs may run under CUDA-graph memory pools, so the op asks its backend for
    per-call workspaces (`transient_workspaces`); eager calls outside it may cache theirs."""
    from llmint8 import backends
    from llmint8.backends import cpu as cpu_backend

    seen = []
    real = cpu_backend.int8_linear

    def recording(*args, **kwargs):
        seen.append(backends.workspaces_are_transient())
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu_backend, "int8_linear", recording)
    layer = _model()[0]
    args = (_x(3), layer.weight.CB, layer.weight.SCB, layer.bias, 6.0, None)
    torch.ops.llmint8.int8_linear(*args, "int8")
    real_out = real(*args)
    assert seen == [True] and not backends.workspaces_are_transient()
    with backends.transient_workspaces():
        with backends.transient_workspaces():
            assert backends.workspaces_are_transient()
        assert backends.workspaces_are_transient()
    assert not backends.workspaces_are_transient()
    assert torch.equal(torch.ops.llmint8.int8_linear(*args, "int8"), real_out)


@pytest.mark.gpu
def test_reduce_overhead_cuda_graphs_match_eager():
    torch._dynamo.reset()
    layer = _model()[0].half().cuda()
    compiled = torch.compile(layer, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        x = _x(8).half().cuda()
        expected = layer(x)
        for _ in range(4):  # warm-up runs, the capture, then replays
            assert torch.equal(compiled(x).clone(), expected)
