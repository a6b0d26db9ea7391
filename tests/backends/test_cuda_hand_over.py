"""The hand-over of "auto" LLM.int8() calls with many outlier columns to the weight-only product
(hopper.cuh): on the wgmma plans both kernels are launched after the gather kernel and its column
count picks one on the GPU. Checked on the device, for every plan that hands over: up to the
plan's limit the bits of the forced LLM.int8() call, above it the bits of the weight-only kernel
on the same plan (within its float64 bound); the stream's mask and the stream-K counters left
zeroed either way; eager, prepared and graph-replayed calls alike."""

import pytest
import torch

from ..helpers import assert_within_bound, reference_linear, weight_only_bound
from .test_cuda import _forced_plan, _skip_without_wgmma
from .test_cuda_stream_mask import layer_of, with_columns

pytestmark = pytest.mark.gpu
cuda_backend = pytest.importorskip("llmint8.backends.cuda") if torch.cuda.is_available() else None


def _plans():
    """(tokens, splits, weight rows) of int8_wgmma.cu (weight rows 0) and int8_wgmma_tokens.cu,
    dense outlier part or not."""
    if cuda_backend is None:
        return []
    wgmma = [(t, s, 0) for t, _ in cuda_backend.INT8_WGMMA_TOKEN_TILES for s in (1, 2)]
    wgmma.append((cuda_backend.INT8_WGMMA_PAIR_TILE[0], 1, 0))
    tokens = [(64 * c, 1, r) for r, c, _ in cuda_backend.INT8_TOKENS_TILES]
    return wgmma + tokens


@pytest.fixture
def forced_plan(monkeypatch):
    """test_cuda's `_forced_plan` for wgmma plans, returning the plan; the layouts cleared after
    (they cache the forced plans by shape)."""

    def force(tokens, splits, weight_rows):
        _forced_plan(monkeypatch, "wgmma", tokens, splits, weight_rows)
        return cuda_backend.Plan("wgmma", tokens, splits, 0, weight_rows)

    yield force
    cuda_backend._layouts.clear()


def _weight_only_on_its_plan(x, CB, SCB, bias):
    """The weight-only kernel the hand-over launches: weight_only_wgmma.cu on its own plan."""
    m, k = x.shape
    name = cuda_backend.C_TYPES[x.dtype]
    plan = cuda_backend.weight_only_wgmma_plan(0, m, CB.shape[0], k, name)
    return cuda_backend.weight_only_linear(x, CB, SCB, bias, wgmma=plan)


def _left_clean():
    """The stream's mask and the stream-K tile counters are zero between calls."""
    stream = torch.cuda.current_stream()
    masks = cuda_backend._local.stream_masks
    mask = masks.get((stream.device.index, stream.cuda_stream))
    assert mask is None or not mask.any(), "a call left outlier-mask bits (or its counter) set"
    for workspace in cuda_backend._streamk_workspaces.values():
        counters = workspace[: 4 * cuda_backend.STREAMK_MAX_TILES].view(torch.int32)
        assert not counters.any(), "a gated weight-only call left stream-K counters set"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tokens, splits, weight_rows", _plans())
def test_auto_hands_calls_with_many_outlier_columns_to_the_weight_only_product(
    forced_plan, dtype, tokens, splits, weight_rows
):
    _skip_without_wgmma()
    plan = forced_plan(tokens, splits, weight_rows)
    for m, k, n in [(40, 1040, 200), (100, 4096, 300)]:
        _, CB, SCB, bias = layer_of(k, n, m + k + n, dtype)
        probe = torch.empty(m, k, dtype=dtype, device="cuda")
        above = cuda_backend._hand_over_above(probe, CB, plan)
        dense = cuda_backend._has_dense_part(plan)
        if tokens == cuda_backend.INT8_WGMMA_PAIR_TILE[0]:
            listed_above = cuda_backend.pair_hand_over_above(m, k)
        else:
            listed_above = cuda_backend.HAND_OVER_LISTED_ABOVE[tokens]
        expected_above = cuda_backend.HAND_OVER_DENSE_ABOVE if dense else listed_above
        assert above == expected_above, (plan, above)
        for columns in (0, 5, above, above + 1, 3 * above, k):
            x, planted = with_columns(m, k, min(columns, k), columns + m, dtype)
            what = f"{(m, k, n)} {len(planted)} outlier columns, plan {plan}"
            auto = cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None, auto=True)
            _left_clean()
            if len(planted) <= above:
                forced = cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
                assert torch.equal(auto, forced), f"{what}: not LLM.int8()'s bits"
                continue
            weight_only = _weight_only_on_its_plan(x, CB, SCB, bias)
            assert torch.equal(auto, weight_only), f"{what}: not the weight-only kernel's bits"
            weight = CB.double().cpu() * (SCB.double().cpu()[:, None] / 127.0)
            bound = weight_only_bound(x.cpu(), CB.cpu(), SCB.cpu(), dtype, bias.cpu())
            expected = reference_linear(x.cpu(), weight, bias.cpu())
            assert_within_bound(auto.cpu(), expected, bound, what)
            _left_clean()


def test_forced_int8_and_fp32_calls_never_hand_over(forced_plan):
    """arithmetic="int8" keeps LLM.int8() at any count (no weight-only launch); fp32 inputs and
    plans of other kernels have no hand-over; LLMINT8_HAND_OVER=0 (here: the flag) turns it off."""
    _skip_without_wgmma()
    plan = forced_plan(64, 1, 0)
    _, CB, SCB, bias = layer_of(1024, 256, 1)
    x, _ = with_columns(64, 1024, 300, 2)
    stream = torch.cuda.current_stream().cuda_stream
    forced = cuda_backend._int8_call(x, CB, SCB, bias, 6.0, None, 0, 256, stream)
    auto = cuda_backend._int8_call(x, CB, SCB, bias, 6.0, None, 0, 256, stream, auto=True)
    assert len(auto.steps) == len(forced.steps) + 1
    assert forced.steps[-1].args[-1] == -1
    product, gated = auto.steps[-2].args, auto.steps[-1].args
    count, above = product[12], product[-1]  # outlier_count, weight_only_above
    assert above == cuda_backend.HAND_OVER_DENSE_ABOVE and count
    assert any(gated[i : i + 2] == (count, above) for i in range(len(gated)))
    assert auto.steps[1].args[-1] == above and forced.steps[1].args[-1] == -1  # the gather's
    assert cuda_backend._hand_over_above(x.float(), CB, plan) == -1
    gemm = cuda_backend.Plan("gemm", 64, 1, 8)
    assert cuda_backend._hand_over_above(x, CB, gemm) == -1
    unaligned = torch.empty(64 * 1024 + 1, dtype=torch.float16, device="cuda")[1:].view(64, 1024)
    assert cuda_backend._hand_over_above(unaligned, CB, plan) == -1
    y = cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
    assert torch.equal(y, cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None, auto=False))
    assert not torch.equal(y, cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None, auto=True))


@pytest.mark.parametrize("weight_rows", [0, 96, 224])
def test_prepared_and_replayed_auto_calls_hand_over_per_input(
    forced_plan, monkeypatch, weight_rows
):
    """One prepared forward and one captured graph serve inputs on either side of the limit:
    each call takes the product its own input's count picks."""
    _skip_without_wgmma()
    tokens = 64
    plan = forced_plan(tokens, 1, weight_rows)
    monkeypatch.setattr(cuda_backend, "prefers_weight_only", lambda x, CB: False)
    m, k, n = 48, 2048, 320
    _, CB, SCB, bias = layer_of(k, n, 7)
    above = cuda_backend._hand_over_above(torch.empty(m, k, device="cuda").half(), CB, plan)
    inputs = [with_columns(m, k, c, 10 + c)[0] for c in (3, above + 40, 0, k, above)]
    eager = [cuda_backend.int8_linear(x, CB, SCB, bias, 6.0, None, auto=True) for x in inputs]
    prepared = cuda_backend.prepare_linear(inputs[0], CB, SCB, bias, 6.0, None, "auto")
    assert prepared is not None
    for x, expected in zip(inputs, eager):
        assert torch.equal(prepared(x), expected)
        _left_clean()
    static = inputs[0].clone()
    cuda_backend.int8_linear(static, CB, SCB, bias, 6.0, None, auto=True)  # warm-up, compiled
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = cuda_backend.int8_linear(static, CB, SCB, bias, 6.0, None, auto=True)
    for x, expected in zip(inputs, eager):
        static.copy_(x)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, expected)
