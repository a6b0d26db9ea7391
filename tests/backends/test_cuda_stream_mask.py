"""The outlier mask of LLM.int8() forwards that gather their outlier columns (`cuda._stream_mask`):
one per thread and stream (per capture and stream in a CUDA graph), never zeroed before a call
but left zeroed by the gather kernel, its last reader. Checked on the device: the mask is zero
after every call, a call's columns never carry into the next, and the results are the bits of
the same call on a stream whose mask is new."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmint8 import functional as F
from llmint8.backends import cpu as cpu_backend
from llmint8.backends import transient_workspaces

from ..helpers import assert_within_bound, planted_outliers

pytestmark = pytest.mark.gpu
cuda_backend = pytest.importorskip("llmint8.backends.cuda") if torch.cuda.is_available() else None
driver = pytest.importorskip("llmint8.backends.driver") if torch.cuda.is_available() else None


def layer_of(k, n, seed, dtype=torch.float16):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=generator).to(dtype)
    bias = torch.randn(n, generator=generator).to(dtype)
    CB, SCB = F.quantize_weight(weight)
    return weight, CB.cuda(), SCB.cuda(), bias.cuda()


def with_columns(m, k, columns, seed, dtype=torch.float16):
    x, planted = planted_outliers(m, k, columns, torch.Generator().manual_seed(seed))
    return x.to(dtype).cuda(), planted


def stream_mask(stream=None):
    stream = stream or torch.cuda.current_stream()
    return cuda_backend._local.stream_masks[(stream.device.index, stream.cuda_stream)]


def on_new_stream(call):
    """`call()` on a stream used for the first time (so with a new, zeroed mask)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = call()
    torch.cuda.current_stream().wait_stream(side)
    return out


def product_kernel(m, k):
    """LLM.int8()'s product for m rows of K = k (fp16, N = 384, aligned tensors)."""
    wgmma = k % 16 == 0 and m > cuda_backend.GEMV_MAX_ROWS and cuda_backend.uses_wgmma(0)
    cublas = k % 16 == 0 and m >= cuda_backend.CUBLAS_MIN_ROWS and cuda_backend.cublas.available()
    return cuda_backend.plan(0, m, 384, k, cublas_ok=cublas, wgmma_ok=wgmma).kernel


def gathered(m, k):
    """Whether LLM.int8() gathers its outlier columns there: every plan but the GEMV."""
    return product_kernel(m, k) != "gemv"


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    m=st.sampled_from([17, 40, 100, 128, 129, 300]),
    k=st.sampled_from([256, 1000, 2048, 4100]),
    first=st.sampled_from([1, 40, 700]),
    second=st.sampled_from([0, 3, 64]),
)
def test_calls_leave_the_stream_mask_zeroed_and_carry_no_columns(seed, m, k, first, second):
    """Every gathered plan (int8_wgmma.cu on sm_90, cuBLAS and its epilogue, the mma.sync GEMM
    for unaligned K): a call with many outlier columns, then one with other columns on the same
    stream; the second gives the bits it gives on a new stream, and the mask is zero after each."""
    weight, CB, SCB, bias = layer_of(k, 384, seed)
    x1, _ = with_columns(m, k, min(first, k), seed + 1)
    x2, _ = with_columns(m, k, min(second, k), seed + 2)

    def call(x):
        return cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None)

    call(x1)
    got = call(x2)
    torch.cuda.synchronize()
    if gathered(m, k):
        assert not stream_mask().any(), "the gather kernel left bits (or its counter) set"
    assert torch.equal(got, on_new_stream(lambda: call(x2)))
    expected = cpu_backend.int8_linear(x2.cpu(), CB.cpu(), SCB.cpu(), bias.cpu(), 6.0, None)
    magnitude = x2.double().abs().cpu() @ weight.double().abs().t()
    rounding = 2 * torch.finfo(torch.float16).eps * (expected.double().abs() + 1e-3 * magnitude)
    assert_within_bound(got.cpu(), expected, rounding + 1e-4 * magnitude, "cuda vs cpu")


def test_gathered_calls_zero_no_mask_and_the_gemv_still_does():
    """The memset is gone where the gather kernel clears the mask (only split-K counters are
    zeroed then), and stays for the GEMV, which reads the mask itself."""
    _, CB, SCB, bias = layer_of(1024, 384, 0)
    stream = torch.cuda.current_stream().cuda_stream
    for m in (100, 300):
        x, _ = with_columns(m, 1024, 5, m)
        call = cuda_backend._int8_call(x, CB, SCB, bias, 6.0, None, 0, 384, stream)
        assert call.stream_mask is not None and call.stream_mask.numel() > 1024 // 32
        kernel = product_kernel(m, 1024)
        if kernel in ("wgmma", "cublas"):  # no split-K counters either
            assert call.zero_bytes == 0, m
        gather, product = call.steps[1], call.steps[-1]
        mask = call.stream_mask.data_ptr()
        # the gather's `clear` (before hot_tiles and hand_over_above); the product's spent_mask
        # and spent_words (before early_weights, hot_tiles and weight_only_above)
        if kernel == "wgmma":  # int8_wgmma.cu zeroes the mask, the gather takes no count
            assert gather.args[-3] == 0 and product.args[-5:-3] == (mask, 1024 // 32), m
        else:
            assert gather.args[-3] == 1, m
    x, _ = with_columns(1, 1024, 5, 1)
    call = cuda_backend._int8_call(x, CB, SCB, bias, 6.0, None, 0, 384, stream)
    assert call.stream_mask is None and call.zero_bytes >= 4 * (1024 // 32)


def test_transient_calls_zero_a_mask_of_their_own():
    """Inside transient_workspaces() (torch.compile'd callers) a call keeps no memory: it zeroes
    the mask in its own workspace, with the same results."""
    _, CB, SCB, bias = layer_of(2048, 384, 3)
    x, _ = with_columns(200, 2048, 9, 4)
    expected = cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
    stream = torch.cuda.current_stream().cuda_stream
    with transient_workspaces():
        call = cuda_backend._int8_call(x, CB, SCB, bias, 6.0, None, 0, 384, stream)
        got = cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
    assert call.stream_mask is None and call.zero_bytes >= 4 * (2048 // 32)
    assert torch.equal(got, expected)


def test_a_failed_launch_leaves_the_stream_mask_zeroed(monkeypatch):
    """The quantize kernel has set the mask's bits and the next launch fails: the call zeroes the
    mask (no gather kernel will), so that the next call finds it clean."""
    _, CB, SCB, bias = layer_of(2048, 384, 5)
    x, _ = with_columns(200, 2048, 30, 6)
    x2, _ = with_columns(200, 2048, 2, 7)
    cuda_backend.int8_linear(x2, CB, SCB, bias, 6.0, None)  # the stream's mask exists
    run = cuda_backend._run

    def quantize_then_fail(steps):
        run(steps[:1])
        raise RuntimeError("launch failed")

    monkeypatch.setattr(cuda_backend, "_run", quantize_then_fail)
    with pytest.raises(RuntimeError, match="launch failed"):
        cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
    monkeypatch.setattr(cuda_backend, "_run", run)
    torch.cuda.synchronize()
    assert not stream_mask().any()
    again = cuda_backend.int8_linear(x2, CB, SCB, bias, 6.0, None)
    fresh = on_new_stream(lambda: cuda_backend.int8_linear(x2, CB, SCB, bias, 6.0, None))
    assert torch.equal(again, fresh)


def test_captures_have_ids_and_their_forwards_one_mask_zeroed_inside_the_graph():
    """Each capture gets a mask of its own, zeroed by the graph before its first forward and left
    zeroed by each; replays with other outlier columns equal eager calls bit for bit."""
    assert driver.capture_id(torch.cuda.current_stream().cuda_stream) is None
    layers = [layer_of(k, 384, k) for k in (1024, 2048, 1024)]
    xs = [with_columns(128, layer[1].shape[1], 4, i)[0] for i, layer in enumerate(layers)]

    def forwards():
        return [cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
                for x, (_, CB, SCB, bias) in zip(xs, layers)]  # fmt: skip

    on_new_stream(forwards)  # compiled and loaded before capture
    ids, graphs, outs = [], [], []
    for _ in range(2):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            ids.append(driver.capture_id(torch.cuda.current_stream().cuda_stream))
            outs.append(forwards())
            mask = cuda_backend._local.capture_masks[1]
        graphs.append((graph, mask))
    assert None not in ids and ids[0] != ids[1]
    assert graphs[0][1] is not graphs[1][1]
    for replay in range(3):
        for i, x in enumerate(xs):
            fresh, _ = with_columns(128, x.shape[1], 3 * replay + i, 10 * replay + i)
            x.copy_(fresh)
        expected = on_new_stream(forwards)
        for (graph, masks), out in zip(graphs, outs):
            graph.replay()
            torch.cuda.synchronize()
            for got, want in zip(out, expected):
                assert torch.equal(got, want), replay
            assert all(not mask.any() for mask in masks.values())
