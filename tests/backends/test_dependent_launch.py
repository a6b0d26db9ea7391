"""Programmatic dependent launch (sm_90+): every kernel may start before the kernel ahead of it on
the stream has finished, so each must wait before it reads that kernel's output or writes its
own. Launches captured in CUDA graphs take it (eager ones do not): chains of layers whose kernels
follow one another directly give the same outputs, bit for bit, as plain stream order (run on the
device)."""

import pytest
import torch
from torch import nn

import llmint8

pytestmark = pytest.mark.gpu
driver = pytest.importorskip("llmint8.backends.driver") if torch.cuda.is_available() else None

requires_dependent_launch = pytest.mark.skipif(
    not torch.cuda.is_available()
    or torch.cuda.get_device_capability() < driver.DEPENDENT_LAUNCH_CAPABILITY,
    reason="programmatic dependent launch needs sm_90",
)


@pytest.fixture
def plain_stream_order():
    """Runs the test's block with dependent launch off, then restores the setting."""

    class Switch:
        def __enter__(self):
            self.previous = driver.set_dependent_launch(False)

        def __exit__(self, *exc):
            driver.set_dependent_launch(self.previous)

    return Switch()


def _chain(width: int, depth: int, arithmetic: str) -> nn.Sequential:
    """`depth` int8 layers of width x width whose kernels follow one another directly."""
    torch.manual_seed(depth)
    layers = [
        llmint8.nn.Linear8bitLt(width, width, has_fp16_weights=False, threshold=6.0,
                                arithmetic=arithmetic)
        for _ in range(depth)
    ]  # fmt: skip
    return nn.Sequential(*layers).cuda()


def _input(m: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.randn(m, width, device="cuda", dtype=dtype) * 2
    x[:, torch.randperm(width, device="cuda")[:5]] *= 20  # outlier columns for LLM.int8()
    return x


@requires_dependent_launch
@pytest.mark.parametrize("arithmetic", ["auto", "int8", "weight_only"])
@pytest.mark.parametrize("m", [1, 16, 48, 128, 300])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_chained_layers_equal_plain_stream_order_eager_and_replayed(
    plain_stream_order, arithmetic, m, dtype
):
    chain = _chain(2048, 6, arithmetic).to(dtype)
    x = _input(m, 2048, dtype)
    with torch.no_grad():
        with plain_stream_order:
            expected = chain(x)
        torch.cuda.synchronize()
        assert torch.isfinite(expected).all()
        assert torch.equal(chain(x), expected)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            chain(x)  # warm-up before capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = chain(x)
        fresh = _input(m, 2048, dtype)
        with plain_stream_order:
            expected = chain(fresh)
        x.copy_(fresh)
        for _ in range(3):
            graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, expected)


@requires_dependent_launch
@pytest.mark.parametrize("m", [1, 48, 128])
def test_a_replayed_forward_right_after_a_weight_write_reads_the_new_weight(plain_stream_order, m):
    """A graph that copies a weight and then runs the layer: the layer's kernel starts before
    the copy has finished and must still read the copied weight."""
    layer = _chain(4096, 1, "auto")[0].half()
    others = [_chain(4096, depth, "auto")[depth - 1].half() for depth in (2, 3)]
    source = (torch.empty_like(layer.weight.CB), torch.empty_like(layer.weight.SCB))
    x = _input(m, 4096, torch.float16)
    with torch.no_grad():
        layer(x)  # kernels compiled before capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            layer.weight.CB.copy_(source[0])
            layer.weight.SCB.copy_(source[1])
            captured = layer(x)
        for other in others:
            with plain_stream_order:
                expected = other(x)
            source[0].copy_(other.weight.CB)
            source[1].copy_(other.weight.SCB)
            layer.bias.copy_(other.bias)
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(captured, expected)


def _quantized_then_multiplied(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A weight quantized by llmint8 and the int8 product that reads it, one kernel after the
    other."""
    CB, SCB = llmint8.functional.quantize_weight(w)
    return llmint8.functional.int8_linear(x, CB, SCB, threshold=6.0, arithmetic="int8")


@requires_dependent_launch
@pytest.mark.parametrize("m", [16, 64])
@pytest.mark.parametrize("n, k", [(64, 131072), (11008, 4096)])
def test_a_replayed_product_right_after_its_weight_is_quantized_reads_the_new_weight(
    plain_stream_order, m, n, k
):
    """int8_wgmma.cu streams its weight before it waits for the kernels before it; a weight that
    llmint8 quantizes in the same graph holds the product back until it is written. A guard: on
    the H200 the race did not show even with the hold off (benches/NOTES.md v36), the
    activations' quantize and gather kernels sitting between the two; 64 rows of 131072 leave
    the quantize kernel's blocks few SMs and a long pass over each row before it writes."""
    torch.manual_seed(m)
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    x = _input(m, k, torch.float16)
    with torch.no_grad():
        _quantized_then_multiplied(w, x)  # kernels compiled before capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = _quantized_then_multiplied(w, x)
        for seed in (1, 2, 3):
            torch.manual_seed(seed)
            w.copy_(torch.randn_like(w))
            with plain_stream_order:
                expected = _quantized_then_multiplied(w, x)
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(captured, expected)
