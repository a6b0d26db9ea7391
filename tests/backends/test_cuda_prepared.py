"""LLM.int8()'s prepared eager forwards on the GPU (`cuda.prepare_linear`: quantize, gather and
product launches packed once per input shape, the workspace held): the same bits as the general
path for every plan, and the calls it must decline (another stream or thread, a CUDA graph being
captured) left to the general path."""

import threading

import pytest
import torch
from torch import nn

import llmint8
from llmint8 import functional as F

pytestmark = pytest.mark.gpu
cuda_backend = pytest.importorskip("llmint8.backends.cuda") if torch.cuda.is_available() else None


def int8_layer(k, n, threshold, with_bias=True, dtype=torch.float16, seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(k, n, bias=with_bias).to(dtype)
    layer = llmint8.nn.Linear8bitLt(k, n, bias=with_bias, has_fp16_weights=False,
                                    threshold=threshold, arithmetic="int8")  # fmt: skip
    layer.load_state_dict(linear.state_dict())
    return layer.cuda()


def inputs_with_outliers(m, k, dtype, calls=3):
    """Fresh inputs, each with its own outlier columns (none in the first), so that a
    call's outlier mask must not carry into the next."""
    xs = []
    for call in range(calls):
        x = torch.randn(m, k, device="cuda", dtype=dtype)
        for column in range(call * 3):
            x[:, (7 * column + 11 * call) % k] *= 20
        xs.append(x)
    return xs


def general(layer, x):
    weight = layer.weight
    return F.int8_linear(x, weight, weight.SCB, layer.bias, layer.threshold, None, None, "int8")


def prepared_of(layer, x):
    key = (x.shape, x.dtype, x.get_device(), "int8", layer.threshold, True)
    return layer._prepared_forwards[key][1]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
@pytest.mark.parametrize("k, n", [(512, 320), (200, 96)])
def test_prepared_int8_forwards_equal_the_general_path(dtype, threshold, k, n):
    """Every row count's plan (GEMV, int8_wgmma.cu on sm_90, the mma.sync GEMM, cuBLAS and the
    epilogue; K = 200 the unaligned kernels), with and without detected outlier columns, inputs
    at new addresses on every call and one 2 bytes off a 16-byte boundary."""
    layer = int8_layer(k, n, threshold, with_bias=k == 512, dtype=dtype)
    for m in (1, 5, 16, 40, 100, 300, 600):
        xs = inputs_with_outliers(m, k, dtype)
        with torch.no_grad():
            ys = [layer(x) for x in xs]
        assert prepared_of(layer, xs[0]) is not None, m
        for x, y in zip(xs, ys):
            assert torch.equal(y, general(layer, x)), (m, threshold)
        storage = torch.randn(m * k + 1, device="cuda", dtype=dtype)
        shifted = storage[1:].view(m, k)
        with torch.no_grad():
            y = layer(shifted)
        assert torch.equal(y, general(layer, shifted)), m


def test_prepared_int8_forward_declines_other_streams_threads_and_captures():
    layer = int8_layer(512, 256, 6.0)
    x = inputs_with_outliers(64, 512, torch.float16)[2]
    expected = general(layer, x)
    with torch.no_grad():
        assert torch.equal(layer(x), expected)  # prepares on this thread and stream
        prepared = prepared_of(layer, x)
        assert torch.equal(prepared(x), expected)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            assert prepared(x) is None
            on_side = layer(x)  # the general path, on the side stream's workspace
        torch.cuda.current_stream().wait_stream(side)
        assert torch.equal(on_side, expected)

        found = {}

        def other_thread():
            with torch.no_grad():
                found["prepared"] = prepared(x)
                found["layer"] = layer(x)
            torch.cuda.synchronize()

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert found["prepared"] is None and torch.equal(found["layer"], expected)

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            assert prepared(x) is None
            captured = layer(x)
        fresh = inputs_with_outliers(64, 512, torch.float16)[1]
        x.copy_(fresh)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, general(layer, fresh))


def test_prepared_int8_forward_keeps_its_workspace_when_the_thread_s_grows():
    """A larger call through the general path replaces this thread's cached workspace; the
    prepared forward keeps the one it was prepared with, and calls of both interleave on one
    stream with the right results."""
    small = int8_layer(256, 128, 6.0, seed=1)
    large = int8_layer(2048, 512, 6.0, seed=2)
    x_small = inputs_with_outliers(8, 256, torch.float16)[2]
    x_large = inputs_with_outliers(900, 2048, torch.float16)[1]
    with torch.no_grad():
        first = small(x_small)
        workspace = prepared_of(small, x_small).launch.workspace
        big = large(x_large)
        again = small(x_small)
        assert prepared_of(small, x_small).launch.workspace is workspace
    assert torch.equal(first, general(small, x_small)) and torch.equal(again, first)
    assert torch.equal(big, general(large, x_large))
