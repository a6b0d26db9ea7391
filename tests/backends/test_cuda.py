"""The CUDA backend against the CPU backend and the float64 reference (run on the device)."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import llmint8
from llmint8 import functional as F
from llmint8.backends import cpu as cpu_backend

from ..helpers import (
    assert_within_bound,
    int8_linear_bound,
    planted_outliers,
    reference_linear,
    weight_only_bound,
)
from ..test_blog_walkthrough import run_walkthrough

pytestmark = pytest.mark.gpu
cuda_backend = pytest.importorskip("llmint8.backends.cuda") if torch.cuda.is_available() else None

DTYPES = [torch.float16, torch.bfloat16, torch.float32]


@pytest.fixture(scope="module", autouse=True)
def every_kernel_compiled():
    """Compiles every kernel once, in parallel, before the tests (on a machine whose CuPy cache
    is cold, compiling one group at a time at first use dominated this module's time)."""
    import time

    from llmint8.backends.cuda_kernels import EXPRESSIONS, precompile

    start = time.perf_counter()
    count = precompile(0)
    print(f"\nprecompile: {count} kernels in {time.perf_counter() - start:.1f} s")
    assert count == sum(len(names) for names in EXPRESSIONS.values())


POISON = {torch.float16: float("nan"), torch.bfloat16: float("nan"), torch.float32: float("nan")}
# M around the kernel switch (16) and the 128-row tiles; K, N odd and not multiples of the tiles.
rows = st.sampled_from([1, 2, 3, 4, 5, 15, 16, 17, 31, 64, 127, 128, 129, 300])
features = st.sampled_from([1, 15, 16, 31, 32, 33, 64, 100, 255, 256, 1000, 4095, 4096])


def _inputs(seed, m, k, n, dtype, outliers=3):
    generator = torch.Generator().manual_seed(seed)
    x, _ = planted_outliers(m, k, min(outliers, k), generator)
    weight = torch.randn(n, k, generator=generator)
    bias = torch.randn(n, generator=generator)
    return x.to(dtype), weight.to(dtype), bias.to(dtype)


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**31),
    m=rows,
    k=features,
    dtype=st.sampled_from(DTYPES),
    threshold=st.sampled_from([0.0, 6.0]),
    static=st.booleans(),
)
def test_quantize_matches_cpu_bit_for_bit(seed, m, k, dtype, threshold, static):
    x, _, _ = _inputs(seed, m, k, 1, dtype)
    cols = torch.tensor(sorted({0, k // 2, k - 1}), dtype=torch.long) if static else None
    expected = cpu_backend.quantize_rows(x, threshold, cols)
    got = cuda_backend.quantize_rows(x.cuda(), threshold, None if cols is None else cols.cuda())
    assert torch.equal(got[0].cpu(), expected[0])
    assert torch.equal(got[1].cpu(), expected[1])
    assert torch.equal(got[2].cpu(), expected[2])


@pytest.mark.parametrize("mode", ["plain", "detect", "static"])
def test_quantize_vector_and_element_paths_agree(mode):
    """quantize_rows.cu reads 16 bytes at a time where x is 16-byte aligned and K a multiple of
    16, element by element elsewhere: a misaligned copy of the same rows gives the same codes."""
    m, k = 37, 4096
    x, _, _ = _inputs(3, m, k, 1, torch.float16, outliers=9)
    threshold = 0.0 if mode == "plain" else 6.0
    cols = torch.tensor([5, 700, 4095], device="cuda") if mode == "static" else None
    aligned = x.cuda()
    misaligned = torch.empty(m * k + 1, dtype=x.dtype, device="cuda")[1:].view(m, k)
    misaligned.copy_(aligned)
    assert aligned.data_ptr() % 16 == 0 and misaligned.data_ptr() % 16 != 0
    vector = cuda_backend.quantize_rows(aligned, threshold, cols)
    element = cuda_backend.quantize_rows(misaligned, threshold, cols)
    expected = cpu_backend.quantize_rows(x, threshold, None if cols is None else cols.cpu())
    for got in (vector, element):
        for part, want in zip(got, expected):
            assert torch.equal(part.cpu(), want)
    if mode == "detect":
        assert len(expected[2]) == 9


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["plain", "detect", "static"])
@pytest.mark.parametrize(
    "m, k",
    [(1, 4104), (37, 8192), (128, 11008), (5, 16400), (3, 16393), (300, 8192)],
)
def test_quantize_blocks_of_every_width_match_cpu(m, k, mode, dtype):
    """quantize_rows.cu's block widens to 512 or 1024 threads where few rows leave SMs idle
    (`quantize_threads`): rows kept in registers over one or two steps, re-read past them
    (16400 columns), element by element (odd K), and 256 threads for many rows, all give the
    CPU's codes, scales and outlier columns bit for bit."""
    from llmint8.backends.cuda_kernels import quantize_threads, sm_count

    x, _, _ = _inputs(m * 7 + k, m, k, 1, dtype, outliers=11)
    threshold = 0.0 if mode == "plain" else 6.0
    cols = torch.tensor([0, 777, k - 1]) if mode == "static" else None
    expected = cpu_backend.quantize_rows(x, threshold, cols)
    got = cuda_backend.quantize_rows(x.cuda(), threshold, None if cols is None else cols.cuda())
    for part, want in zip(got, expected):
        assert torch.equal(part.cpu(), want)
    if mode == "detect":  # the columns holding any |x| >= 6: planted ones only, some at m = 1
        holding = (x.float().abs() >= threshold).any(dim=0).nonzero().flatten()
        assert len(holding) >= 5 and torch.equal(got[2].cpu(), holding)
    width = 16 // x.element_size() if k % 16 == 0 else 1
    threads = quantize_threads(m, k, width, sm_count(0))
    assert threads == (256 if m >= 2 * sm_count(0) else 1024 if k > 4096 else 512)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31), m=rows, k=features, n=features)
def test_int32_accumulators_equal_cpu(seed, m, k, n):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(-127, 128, (m, k), generator=generator, dtype=torch.int8)
    b = torch.randint(-127, 128, (n, k), generator=generator, dtype=torch.int8)
    out = torch.full((m, n), -(2**31), dtype=torch.int32, device="cuda")  # poisoned
    got = cuda_backend.int8_matmul(a.cuda(), b.cuda(), out=out)
    assert torch.equal(got.cpu(), cpu_backend.int8_matmul(a, b))


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31),
    m=rows,
    k=features,
    n=features,
    dtype=st.sampled_from(DTYPES),
    threshold=st.sampled_from([0.0, 6.0]),
    with_bias=st.booleans(),
)
def test_int8_linear_matches_cpu_and_reference(seed, m, k, n, dtype, threshold, with_bias):
    # K and N reach 4095/4096, but not both at once: the CPU and float64 references of a
    # 4096×4096 layer dominated the GPU suite's time without covering another code path.
    assume(k * n <= 4096 * 1000)
    x, weight, bias = _inputs(seed, m, k, n, dtype)
    bias = bias if with_bias else None
    CB, SCB = F.quantize_weight(weight)
    expected = cpu_backend.int8_linear(x, CB, SCB, bias, threshold, None)
    out = torch.full((m, n), POISON[dtype], dtype=dtype, device="cuda")
    got = cuda_backend.int8_linear(
        x.cuda(),
        CB.cuda(),
        SCB.cuda(),
        None if bias is None else bias.cuda(),
        threshold,
        None,
        out=out,
    ).cpu()
    assert not got.isnan().any(), "unwritten (poisoned) outputs remain"
    bound = int8_linear_bound(x, weight, threshold, dtype, bias)
    assert_within_bound(got, reference_linear(x, weight, bias), bound, "cuda vs float64")
    # Same int32 accumulators and scales as the CPU: only fp32 rounding of the epilogue differs.
    magnitude = x.double().abs() @ weight.double().abs().t()
    rounding = 2 * torch.finfo(dtype).eps * (expected.double().abs() + 1e-3 * magnitude) + 1e-30
    assert_within_bound(got, expected, rounding + 1e-4 * magnitude, "cuda vs cpu")


# Many outlier columns (m, k, n, planted columns) on every plan: GEMV (with and without split K),
# the GEMM's row tiles with and without split K, cuBLAS (aligned, M > 16) and the own GEMM
# for unaligned K; more than 1024 columns (the GEMM lists them in windows of 1024), every column
# an outlier, contiguous runs and scattered ones; more rows than the gather's blocks take at once.
MANY_COLUMNS = [(1, 4096, 300, 4096), (2, 512, 300, 200), (3, 2500, 130, 1500),
                (4, 1024, 8192, 37), (16, 4096, 384, 64), (17, 4095, 130, 700),
                (50, 1000, 4095, 333), (100, 2048, 1000, 2048), (129, 256, 8192, 100),
                (200, 8192, 1100, 2100), (300, 3072, 520, 1100), (300, 3000, 520, 1100),
                (300, 512, 384, 0), (300, 3000, 4100, 200), (40, 1024, 9000, 150)]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_outlier_columns_match_cpu_and_reference(dtype):
    generator = torch.Generator().manual_seed(11)
    seen = set()
    for m, k, n, c in MANY_COLUMNS:
        x, _ = planted_outliers(m, k, c, generator)
        x = x.to(dtype)
        weight = torch.randn(n, k, generator=generator).to(dtype)
        bias = torch.randn(n, generator=generator).to(dtype)
        CB, SCB = F.quantize_weight(weight)
        cublas = k % 16 == 0 and n % 4 == 0 and m >= cuda_backend.CUBLAS_MIN_ROWS
        cublas = cublas and cuda_backend.cublas.available()
        wgmma = _int8_wgmma_takes(m, k, dtype)
        plan = cuda_backend.plan(0, m, n, k, cublas_ok=cublas, wgmma_ok=wgmma)
        seen.add((plan.kernel, plan.splits > 1))
        expected = cpu_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
        out = torch.full((m, n), POISON[dtype], dtype=dtype, device="cuda")
        got = cuda_backend.int8_linear(x.cuda(), CB.cuda(), SCB.cuda(), bias.cuda(), 6.0, None, out)
        got = got.cpu()
        what = f"{(m, k, n, c)} {plan}"
        assert not got.isnan().any(), f"{what}: unwritten (poisoned) outputs remain"
        bound = int8_linear_bound(x, weight, 6.0, dtype, bias)
        assert_within_bound(got, reference_linear(x, weight, bias), bound, f"{what} vs float64")
        magnitude = x.double().abs() @ weight.double().abs().t()
        rounding = 2 * torch.finfo(dtype).eps * (expected.double().abs() + 1e-3 * magnitude)
        assert_within_bound(got, expected, rounding + 1e-4 * magnitude, f"{what} vs cpu")
    # On sm_90 fp16 / bf16 products of aligned operands run int8_wgmma.cu where others run cuBLAS.
    wgmma = _int8_wgmma_takes(64, 64, dtype)
    product = [("wgmma", False), ("wgmma", True)] if wgmma else [("cublas", False)]
    for wanted in [("gemv", False), ("gemv", True), ("gemm", False), ("gemm", True), *product]:
        assert wanted in seen, f"no shape exercised {wanted}: {sorted(seen)}"


def _int8_wgmma_takes(m, k, dtype):
    """Whether int8_linear runs int8_wgmma.cu for m rows of K = k (aligned tensors)."""
    index = torch.cuda.current_device()
    aligned = k % 16 == 0 and dtype != torch.float32 and m > cuda_backend.GEMV_MAX_ROWS
    return aligned and cuda_backend.uses_wgmma(index)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    m=rows,
    k=features,
    n=st.sampled_from([1, 8, 130, 1000]),
    fraction=st.sampled_from([0.01, 0.1, 0.5, 1.0]),
    dtype=st.sampled_from([torch.float16, torch.bfloat16]),
    static=st.booleans(),
)
def test_outlier_columns_at_any_count_match_cpu(seed, m, k, n, fraction, dtype, static):
    generator = torch.Generator().manual_seed(seed)
    x, columns = planted_outliers(m, k, max(1, int(fraction * k)), generator)
    x = x.to(dtype)
    weight = torch.randn(n, k, generator=generator).to(dtype)
    CB, SCB = F.quantize_weight(weight)
    cols = columns if static else None
    expected = cpu_backend.int8_linear(x, CB, SCB, None, 6.0, cols)
    got = cuda_backend.int8_linear(
        x.cuda(), CB.cuda(), SCB.cuda(), None, 6.0, None if cols is None else cols.cuda()
    ).cpu()
    magnitude = x.double().abs() @ weight.double().abs().t()
    rounding = 2 * torch.finfo(dtype).eps * (expected.double().abs() + 1e-3 * magnitude)
    assert_within_bound(got, expected, rounding + 1e-4 * magnitude, "cuda vs cpu")


def test_outlier_decomposition_on_cuda_matches_reference_error():
    generator = torch.Generator().manual_seed(0)
    x, _ = planted_outliers(256, 4096, 6, generator)
    x = x.half()
    weight = torch.randn(1024, 4096, generator=generator).half()
    CB, SCB = F.quantize_weight(weight)
    exact = reference_linear(x, weight)
    for threshold, limit in ((6.0, 0.02), (0.0, 0.2)):
        y = F.int8_linear(x.cuda(), CB.cuda(), SCB.cuda(), threshold=threshold).double().cpu()
        assert ((y - exact).norm() / exact.norm()).item() < limit


def test_static_outlier_columns_on_cuda():
    generator = torch.Generator().manual_seed(1)
    x, columns = planted_outliers(40, 300, 4, generator)
    weight = torch.randn(70, 300, generator=generator)
    CB, SCB = F.quantize_weight(weight)
    cpu = F.int8_linear(x, CB, SCB, outlier_cols=columns)
    gpu = F.int8_linear(x.cuda(), CB.cuda(), SCB.cuda(), outlier_cols=columns.cuda()).cpu()
    bound = int8_linear_bound(x, weight, 0.0, x.dtype, outlier_cols=columns)
    assert_within_bound(gpu, reference_linear(x, weight), bound)
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_nan_rows_propagate_like_cpu():
    weight = torch.randn(8, 64)
    CB, SCB = F.quantize_weight(weight)
    x = torch.randn(5, 64)
    x[2, 7] = float("nan")
    for threshold in (0.0, 6.0):
        y = F.int8_linear(x.cuda(), CB.cuda(), SCB.cuda(), threshold=threshold).cpu()
        assert torch.isnan(y[2]).all() and torch.isfinite(y[[0, 1, 3, 4]]).all()


def test_blog_walkthrough_on_cuda(tmp_path):
    model = run_walkthrough(tmp_path, 0)
    assert model[0].weight.device == torch.device("cuda", 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(0, 4095), (3, 7, 4095), (20000, 256), (5, 11008)])
def test_linear8bitlt_on_cuda_any_batch(dtype, shape):
    torch.manual_seed(0)
    k = shape[-1]
    linear = nn.Linear(k, 11007 if k != 256 else 512).to(dtype)
    layer = llmint8.nn.Linear8bitLt(k, linear.out_features, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict(linear.state_dict())
    layer = layer.cuda()
    assert layer.weight.device.type == "cuda" and layer.weight.dtype == torch.int8
    x = torch.randn(*shape, dtype=dtype)
    if x.numel():
        x[..., 5] *= 25
    y = layer(x.cuda())
    assert y.shape == (*shape[:-1], linear.out_features) and y.dtype == dtype
    if x.numel():
        flat = x.reshape(-1, k)[:64]
        w, b = linear.weight.detach(), linear.bias.detach()
        bound = int8_linear_bound(flat, w, 6.0, dtype, b)
        assert_within_bound(
            y.reshape(-1, linear.out_features)[:64].cpu(), reference_linear(flat, w, b), bound
        )


def test_weights_quantized_on_device_equal_cpu_quantization():
    weight = torch.randn(300, 777, dtype=torch.bfloat16) * 50
    CB, SCB = F.quantize_weight(weight)
    CBg, SCBg = F.quantize_weight(weight.cuda())
    assert torch.equal(CBg.cpu(), CB) and torch.equal(SCBg.cpu(), SCB)


def test_backward_on_cuda():
    layer = llmint8.nn.Linear8bitLt(64, 32, has_fp16_weights=False, threshold=6.0).cuda()
    x = torch.randn(4, 64, device="cuda", dtype=torch.float16, requires_grad=True)
    layer(x).float().sum().backward()
    expected = F.dequantize_rowwise(layer.weight.CB, layer.weight.SCB).sum(0)
    torch.testing.assert_close(x.grad.float(), expected.expand(4, -1), rtol=2e-3, atol=2e-3)


def test_compiled_kernels_are_reused():
    from llmint8.backends.cuda_kernels import compiled_kernels

    layer = llmint8.nn.Linear8bitLt(32, 16, has_fp16_weights=False).cuda()
    layer(torch.randn(2, 32, device="cuda", dtype=torch.float16))
    compiled = len(compiled_kernels())
    layer(torch.randn(3, 32, device="cuda", dtype=torch.float16))
    assert len(compiled_kernels()) == compiled


@pytest.mark.parametrize("m", [1, 8, 100, 300])
@pytest.mark.parametrize("columns", [1, 200])
@pytest.mark.parametrize("arithmetic", ["auto", "int8", "weight_only"])
def test_cuda_graph_replay_matches_eager(m, columns, arithmetic):
    torch.manual_seed(0)
    layer = llmint8.nn.Linear8bitLt(
        512, 384, has_fp16_weights=False, threshold=6.0, arithmetic=arithmetic
    ).cuda()
    x = torch.randn(m, 512, device="cuda", dtype=torch.float16)
    x[:, 3] *= 30
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            layer(x)  # warm-up: kernels compiled and loaded before capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = layer(x)
        fresh = torch.randn(m, 512, device="cuda", dtype=torch.float16)
        fresh[:, torch.randperm(512, device="cuda")[:columns]] *= 30  # other columns, more
        x.copy_(fresh)
        graph.replay()
        torch.cuda.synchronize()
        # Same int32 sums and the same epilogue whichever GEMM ran: identical outputs.
        assert torch.equal(captured, layer(fresh))


def test_cublas_product_is_captured_in_cuda_graphs(monkeypatch):
    """cuBLAS's int8 GEMM runs on PyTorch's handle, so a captured forward keeps it (no fallback
    to the own GEMM): the replayed graph computes fresh inputs as eager calls and the CPU do."""
    from llmint8.backends import cublas

    assert cublas.available()
    monkeypatch.setattr(cuda_backend, "uses_wgmma", lambda index: False)  # cuBLAS on sm_90 too
    captured_calls = []
    gemm = cublas.int8_gemm

    def spy(*args):
        captured_calls.append(torch.cuda.is_current_stream_capturing())
        gemm(*args)

    monkeypatch.setattr(cublas, "int8_gemm", spy)
    m, k, n = max(cuda_backend.CUBLAS_MIN_ROWS, 40), 1024, 768
    x, weight, bias = _inputs(5, m, k, n, torch.float16, outliers=3)
    CB, SCB = F.quantize_weight(weight)
    CB, SCB, bias_cuda = CB.cuda(), SCB.cuda(), bias.cuda()
    static = x.cuda()
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            F.int8_linear(static, CB, SCB, bias_cuda, 6.0, arithmetic="int8")
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = F.int8_linear(static, CB, SCB, bias_cuda, 6.0, arithmetic="int8")
        assert captured_calls == [False, True], captured_calls
        fresh, _, _ = _inputs(6, m, k, n, torch.float16, outliers=7)
        static.copy_(fresh.cuda())
        graph.replay()
        torch.cuda.synchronize()
        eager = F.int8_linear(fresh.cuda(), CB, SCB, bias_cuda, 6.0, arithmetic="int8")
        assert torch.equal(captured, eager)
    expected = cpu_backend.int8_linear(fresh, CB.cpu(), SCB.cpu(), bias, 6.0, None)
    magnitude = fresh.double().abs() @ weight.double().abs().t()
    rounding = 2 * torch.finfo(torch.float16).eps * (expected.double().abs() + 1e-3 * magnitude)
    assert_within_bound(captured.cpu(), expected, rounding + 1e-4 * magnitude, "graph vs cpu")


def test_every_kernel_plan_matches_cpu():
    """GEMV, the GEMM with each row tile, with and without split K: int32 products bit-exact and
    outputs as the CPU's, whatever plan the GPU's SM count leads to for these shapes."""
    generator = torch.Generator().manual_seed(7)
    seen = set()
    shapes = [(3, 4096, 300), (2, 256, 8192), (17, 4096, 384), (31, 4095, 130), (50, 1000, 4095),
              (64, 256, 2048), (100, 4095, 2000), (129, 256, 8192), (200, 8192, 11008)]  # fmt: skip
    for m, k, n in shapes:
        plan = cuda_backend.plan(0, m, n, k, cublas_ok=False)
        seen.add((plan.kernel, plan.tile_rows if plan.kernel == "gemm" else 0, plan.splits > 1))
        a = torch.randint(-127, 128, (m, k), generator=generator, dtype=torch.int8)
        b = torch.randint(-127, 128, (n, k), generator=generator, dtype=torch.int8)
        out = torch.full((m, n), -(2**31), dtype=torch.int32, device="cuda")
        assert torch.equal(cuda_backend.int8_matmul(a.cuda(), b.cuda(), out=out).cpu(),
                           cpu_backend.int8_matmul(a, b)), (m, k, n, plan)  # fmt: skip
        x, weight, bias = _inputs(m * k + n, m, k, n, torch.float16, outliers=5)
        CB, SCB = F.quantize_weight(weight)
        expected = cpu_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
        got = F.int8_linear(x.cuda(), CB.cuda(), SCB.cuda(), bias.cuda(), 6.0,
                            arithmetic="int8").cpu()  # fmt: skip
        magnitude = x.double().abs() @ weight.double().abs().t()
        rounding = 2 * torch.finfo(torch.float16).eps * (expected.double().abs() + 1e-3 * magnitude)
        assert_within_bound(got, expected, rounding + 1e-4 * magnitude, f"{(m, k, n)} {plan}")
    for wanted in [("gemv", 0, False), ("gemv", 0, True), ("gemm", 32, True), ("gemm", 64, False),
                   ("gemm", 128, True), ("gemm", 128, False)]:  # fmt: skip
        assert wanted in seen, f"no shape exercised {wanted}: {sorted(seen)}"


# ---- weight-only arithmetic (weight_only_linear.cu) ----

# (m, k, n): one token and several token tiles, K aligned (vector loads) and not (element loads,
# a partial last chunk), N not a multiple of the row tiles, fewer chunks than warps, aligned K
# ending 16 columns into a 128-column chunk.
WEIGHT_ONLY_SHAPES = [(1, 4096, 300), (3, 1000, 129), (8, 64, 17), (9, 4095, 64),
                      (17, 256, 1000), (40, 100, 33), (70, 8, 5), (2, 11008, 70),
                      (5, 1040, 260), (12, 2064, 200)]  # fmt: skip


def _weight_only_case(seed, m, k, n, dtype, bias_dtype):
    x, weight, bias = _inputs(seed, m, k, n, dtype, outliers=4)
    bias = None if bias_dtype is None else bias.to(bias_dtype)
    CB, SCB = F.quantize_weight(weight)
    return x, CB, SCB, bias


def _check_weight_only(got, x, CB, SCB, bias, dtype, what):
    assert not got.isnan().any(), f"{what}: unwritten (poisoned) outputs remain"
    dequantized = CB.double() * (SCB.double()[:, None] / 127)
    bound = weight_only_bound(x, CB, SCB, dtype, bias)
    assert_within_bound(got, reference_linear(x, dequantized, bias), bound, f"{what} vs float64")
    expected = cpu_backend.weight_only_linear(x, CB, SCB, bias)
    assert_within_bound(got, expected, 2 * bound, f"{what} vs cpu")


def _skip_unless_fits(tiles):
    if not cuda_backend.weight_only_tile_fits(torch.cuda.current_device(), tiles):
        pytest.skip(f"tile {tiles} needs more shared memory than this GPU gives a block")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tiles", cuda_backend.WEIGHT_ONLY_TILES if cuda_backend else [])
def test_weight_only_kernel_matches_reference_and_cpu(dtype, tiles):
    _skip_unless_fits(tiles)
    for i, (m, k, n) in enumerate(WEIGHT_ONLY_SHAPES):
        bias_dtype = (None, dtype, torch.float32)[i % 3]
        x, CB, SCB, bias = _weight_only_case(i, m, k, n, dtype, bias_dtype)
        out = torch.full((m, n), POISON[dtype], dtype=dtype, device="cuda")
        got = cuda_backend.weight_only_linear(
            x.cuda(), CB.cuda(), SCB.cuda(), None if bias is None else bias.cuda(), out=out,
            tiles=tiles,
        ).cpu()  # fmt: skip
        _check_weight_only(got, x, CB, SCB, bias, dtype, f"{(m, k, n)} tiles {tiles}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "tiles", [t for t in cuda_backend.WEIGHT_ONLY_TILES if t[4]] if cuda_backend else []
)
def test_weight_only_shared_memory_ring_gives_the_register_pipelines_bits(dtype, tiles):
    """A tile with its chunks staged in shared memory runs the same products in the same order
    as the tile with two chunks in registers: the same bits, on every shape (aligned ones take
    the ring; unaligned ones fall back to the registers)."""
    _skip_unless_fits(tiles)
    for i, (m, k, n) in enumerate(WEIGHT_ONLY_SHAPES):
        bias_dtype = (None, dtype, torch.float32)[i % 3]
        x, CB, SCB, bias = (
            None if t is None else t.cuda()
            for t in _weight_only_case(200 + i, m, k, n, dtype, bias_dtype)
        )
        ring = cuda_backend.weight_only_linear(x, CB, SCB, bias, tiles=tiles)
        twin = cuda_backend.weight_only_register_twin(tiles)
        registers = cuda_backend.weight_only_linear(x, CB, SCB, bias, tiles=twin)
        assert torch.equal(ring, registers), f"{(m, k, n)} tiles {tiles}"


# (m, k, n) for weight_only_tma.cu: 9-72 rows (and fewer), K a multiple of 16 but not of its
# 64-column chunks nor of the 8 warps' share (nor of 4 splits' share), N not a multiple of its row
# tiles; rows filling no token tile, one, and more than one of each size.
WEIGHT_ONLY_TMA_SHAPES = [(16, 4096, 300), (9, 1040, 129), (12, 2064, 200), (16, 11008, 70),
                          (3, 64, 17), (13, 48, 33), (16, 4112, 1000), (40, 2064, 200),
                          (64, 4112, 129), (33, 1040, 70), (72, 1552, 48)]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tma", cuda_backend.WEIGHT_ONLY_TMA_TILES if cuda_backend else [])
def test_weight_only_tma_gives_the_register_tiles_bits(dtype, tma):
    """weight_only_tma.cu stages the activations by TMA but runs the register tile's products in
    its order: unsplit, the bits of weight_only_linear.cu's tile with the same rows and two token
    tiles whatever its own token tile and stages (for 64-row tiles, which have no register twin,
    weight_only_tma.cu's 16-token tile's); split or not, within the float64 bound, every output
    written."""
    _skip_without_wgmma()
    row_tiles, _, _, splits = tma
    register_tile = (row_tiles, 2, 1, 1, 0)
    twin = register_tile in cuda_backend.WEIGHT_ONLY_TILES
    for i, (m, k, n) in enumerate(WEIGHT_ONLY_TMA_SHAPES):
        bias_dtype = (None, dtype, torch.float32)[i % 3]
        x, CB, SCB, bias = _weight_only_case(300 + i, m, k, n, dtype, bias_dtype)
        out = torch.full((m, n), POISON[dtype], dtype=dtype, device="cuda")
        args = (x.cuda(), CB.cuda(), SCB.cuda(), None if bias is None else bias.cuda())
        got = cuda_backend.weight_only_linear(*args, out=out, tma=tma)
        if splits == 1:
            reference = (
                cuda_backend.weight_only_linear(*args, tiles=register_tile)
                if twin
                else cuda_backend.weight_only_linear(*args, tma=(row_tiles, 2, 2, 1))
            )
            assert torch.equal(got, reference), f"{(m, k, n)} tma {tma}"
        _check_weight_only(got.cpu(), x, CB, SCB, bias, dtype, f"{(m, k, n)} tma {tma}")


def _replayed_on_new_values(layer, x):
    """`layer(x)` captured in a CUDA graph and replayed after `x` is overwritten with new values:
    the replayed output."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = layer(x)
    x.copy_(torch.randn_like(x) * 3)
    graph.replay()
    torch.cuda.synchronize()
    return captured


def test_weight_only_plan_takes_the_tma_kernel_for_9_to_16_rows_of_wide_weights():
    """9-16 rows by weights of TMA_MIN_WEIGHT_ROWS rows or more run weight_only_tma.cu, eager,
    prepared (its tensor map moved to each input) and replayed in a CUDA graph: the register
    tile's bits each time."""
    _skip_without_wgmma()
    index = torch.cuda.current_device()
    wide = cuda_backend.TMA_WIDE_WEIGHT_ROWS
    assert cuda_backend.weight_only_tma_plan(index, 16, 8200, 256) == (2, 2, 2, 1)
    assert cuda_backend.weight_only_tma_plan(index, 9, wide, 4096) == (4, 2, 2, 1)
    for m, n in [(8, 8200), (17, 8200), (16, 4096)]:
        assert cuda_backend.weight_only_tma_plan(index, m, n, 4096) is None
    torch.manual_seed(11)
    layer = llmint8.nn.Linear8bitLt(256, 8200, has_fp16_weights=False, threshold=6.0).cuda()
    weight = layer.weight
    with torch.no_grad():
        for m in (9, 16):
            for _ in range(3):  # the first call prepares, the others run the prepared launch
                x = torch.randn(m, 256, device="cuda", dtype=torch.float16) * 2
                launch = cuda_backend._weight_only_launch(x, weight, weight.SCB, None, 0, 8200)
                assert launch.kernel is cuda_backend.kernel(
                    index,
                    "weight_only_tma.cu",
                    cuda_backend.weight_only_tma_name("__half", (2, 2, 2, 1)),
                )
                registers = cuda_backend.weight_only_linear(
                    x, weight.data, weight.SCB, layer.bias, tiles=(2, 2, 1, 1, 0)
                )
                assert torch.equal(layer(x), registers), m
        x = torch.randn(16, 256, device="cuda", dtype=torch.float16)
        captured = _replayed_on_new_values(layer, x)
        registers = cuda_backend.weight_only_linear(
            x, weight.data, weight.SCB, layer.bias, tiles=(2, 2, 1, 1, 0)
        )
        assert torch.equal(captured, registers)


def test_weight_only_plan_takes_the_narrow_ring_where_its_blocks_fit_one_per_sm():
    """9-16 rows by weights of up to 16 rows per SM take the ring tile of 16-row blocks (the
    32-row ring's blocks would leave SMs idle); more weight rows, more token blocks or up to 8
    rows keep the other ring tiles; the launch of a 2048-row layer runs the narrow ring and gives
    its register twin's bits."""
    index = torch.cuda.current_device()
    narrow = cuda_backend.WEIGHT_ONLY_NARROW_RING_TILES[2]
    rings = cuda_backend.WEIGHT_ONLY_RING_TILES
    if not cuda_backend.weight_only_tile_fits(index, narrow):
        pytest.skip("the narrow ring tile's shared memory does not fit this GPU")
    sms = cuda_backend.sm_count(index)
    cuda_backend._weight_only_tiles.clear()
    assert cuda_backend.weight_only_tiles(index, 16, 16 * sms) == narrow
    assert cuda_backend.weight_only_tiles(index, 9, 16 * sms - 5) == narrow
    assert cuda_backend.weight_only_tiles(index, 16, 16 * sms + 16) == rings[2]
    assert cuda_backend.weight_only_tiles(index, 32, 16 * sms) != narrow
    assert cuda_backend.weight_only_tiles(index, 8, 16 * sms) == rings[1]
    n = min(2048, 16 * sms)
    torch.manual_seed(12)
    layer = llmint8.nn.Linear8bitLt(512, n, has_fp16_weights=False, threshold=6.0).cuda()
    weight = layer.weight
    with torch.no_grad():
        x = torch.randn(16, 512, device="cuda", dtype=torch.float16)
        launch = cuda_backend._weight_only_launch(x, weight, weight.SCB, layer.bias, 0, n)
        name = cuda_backend.weight_only_name("__half", narrow, True)
        assert launch.kernel is cuda_backend.kernel(index, "weight_only_linear.cu", name)
        twin = (*narrow[:4], 0)
        registers = cuda_backend.weight_only_linear(
            x, weight.data, weight.SCB, layer.bias, tiles=twin
        )
        assert torch.equal(layer(x), registers)


def test_weight_only_plan_takes_sixteen_warps_where_the_rows_are_long():
    """9-16 rows by weights of WEIGHT_ONLY_LONG_K columns or more whose 32-row ring fits one
    wave take its 16-warp twin (512 threads); shorter rows, up to 8 rows or more weight rows
    keep their tiles; a 4096-row layer with 8192 columns runs it and gives its 16-warp register
    twin's bits, and unaligned operands run that twin."""
    index = torch.cuda.current_device()
    long = cuda_backend.WEIGHT_ONLY_LONG_RING_TILES[2]
    ring = cuda_backend.WEIGHT_ONLY_RING_TILES[2]
    if not cuda_backend.weight_only_tile_fits(index, long):
        pytest.skip("the 16-warp ring tile's shared memory does not fit this GPU")
    k_long, sms = cuda_backend.WEIGHT_ONLY_LONG_K, cuda_backend.sm_count(index)
    cuda_backend._weight_only_tiles.clear()
    plan = cuda_backend.weight_only_tiles
    assert plan(index, 16, 32 * sms, k=k_long) == long
    assert plan(index, 9, 4096, k=11008) == long
    assert plan(index, 16, 4096, k=k_long - 16) == ring
    assert plan(index, 16, 4096) == ring
    assert plan(index, 8, 4096, k=k_long) == cuda_backend.WEIGHT_ONLY_RING_TILES[1]
    assert plan(index, 16, 32 * sms + 32, k=k_long)[4] == 0  # more than one wave: registers
    twin = cuda_backend.weight_only_register_twin(long)
    assert cuda_backend.weight_only_warps(long) == cuda_backend.weight_only_warps(twin) == 16
    n = min(4096, 32 * sms)
    torch.manual_seed(14)
    layer = llmint8.nn.Linear8bitLt(k_long, n, has_fp16_weights=False, threshold=6.0).cuda()
    weight = layer.weight
    with torch.no_grad():
        for m in (9, 16):
            x = torch.randn(m, k_long, device="cuda", dtype=torch.float16)
            launch = cuda_backend._weight_only_launch(x, weight, weight.SCB, layer.bias, 0, n)
            name = cuda_backend.weight_only_name("__half", long, True)
            assert launch.kernel is cuda_backend.kernel(index, "weight_only_linear.cu", name)
            assert launch.kernel.threads == 512
            registers = cuda_backend.weight_only_linear(
                x, weight.data, weight.SCB, layer.bias, tiles=twin
            )
            assert torch.equal(layer(x), registers)
        k = k_long + 8  # not a multiple of 16: element loads, no ring
        x = torch.randn(16, k, device="cuda", dtype=torch.float16)
        CB = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda")
        launch = cuda_backend._weight_only_launch(x, CB, weight.SCB, None, 0, n)
        name = cuda_backend.weight_only_name("__half", twin, False)
        assert launch.kernel is cuda_backend.kernel(index, "weight_only_linear.cu", name)


def test_weight_only_plan_splits_k_for_17_to_32_rows_of_long_narrow_weights():
    """17-32 rows by weights of fewer than TMA_MIN_WEIGHT_ROWS rows and at least TMA_SPLIT_MIN_K
    columns run weight_only_tma.cu's 32-token tile with K split in two, eager, prepared and
    replayed in a CUDA graph: the same bits each time (the cluster adds its halves in rank
    order), within the float64 bound; its unsplit twin within twice the bound."""
    _skip_without_wgmma()
    index = torch.cuda.current_device()
    k_min = cuda_backend.TMA_SPLIT_MIN_K
    for m in (17, 24, 32):
        assert cuda_backend.weight_only_tma_plan(index, m, 4096, k_min) == (2, 4, 2, 2)
    for m, n, k in [
        (16, 4096, k_min),
        (33, 4096, k_min),
        (32, 4096, k_min - 16),
        (32, 8192, k_min),
    ]:
        assert cuda_backend.weight_only_tma_plan(index, m, n, k) is None
    torch.manual_seed(12)
    k, n = k_min + 16 * 3, 300  # K not a multiple of the 64-column chunks
    layer = llmint8.nn.Linear8bitLt(k, n, has_fp16_weights=False, threshold=6.0).cuda()
    layer.bias.data.normal_()
    weight = layer.weight
    split = cuda_backend.kernel(
        index, "weight_only_tma.cu", cuda_backend.weight_only_tma_name("__half", (2, 4, 2, 2))
    )
    with torch.no_grad():
        for m in (17, 32):
            x = torch.randn(m, k, device="cuda", dtype=torch.float16) * 2
            launch = cuda_backend._weight_only_launch(x, weight, weight.SCB, None, 0, n)
            assert launch.kernel is split
            first = layer(x)
            for _ in range(2):  # the first call prepared, these run the prepared launch
                assert torch.equal(layer(x), first), m
            unsplit = cuda_backend.weight_only_linear(
                x, weight.data, weight.SCB, layer.bias, tma=(2, 4, 2, 1)
            )
            cpu = (x.cpu(), weight.data.cpu(), weight.SCB.cpu(), layer.bias.detach().cpu())
            _check_weight_only(first.cpu(), *cpu, torch.float16, f"split at {m} rows")
            bound = weight_only_bound(*cpu[:3], torch.float16, cpu[3])
            assert_within_bound(first.cpu(), unsplit.cpu(), 2 * bound, f"unsplit at {m} rows")
        x = torch.randn(32, k, device="cuda", dtype=torch.float16)
        captured = _replayed_on_new_values(layer, x)
        eager = cuda_backend.weight_only_linear(x, weight.data, weight.SCB, layer.bias)
        assert torch.equal(captured, eager)


# (m, k, n) for weight_only_gemm.cu: one and several token tiles, rows not filling the tile,
# K not a multiple of its 128-column tiles and shorter than one (splits left with no tile), N
# not a multiple of the 128 weight rows nor even.
WEIGHT_ONLY_GEMM_SHAPES = [
    (17, 256, 1000), (33, 1008, 130), (64, 4096, 256), (100, 2064, 77), (128, 512, 129),
    (200, 1024, 300), (40, 16, 5), (129, 3072, 64),
]  # fmt: skip


def _many_token_plans():
    """(kernel, plan) of every instantiation of the two many-token weight-only kernels:
    weight_only_gemm.cu's (tile, splits) and weight_only_wgmma.cu's (tokens, splits)."""
    if cuda_backend is None:
        return []
    gemm = [("gemm", (tile, splits)) for tile in cuda_backend.WEIGHT_ONLY_GEMM_TILES
            for splits in cuda_backend.WEIGHT_ONLY_GEMM_SPLITS]  # fmt: skip
    wgmma = [("wgmma", (tokens, splits)) for tokens, _ in cuda_backend.WGMMA_TOKEN_TILES
             for splits in (*cuda_backend.WGMMA_SPLITS, cuda_backend.WGMMA_STREAM_K)]  # fmt: skip
    wide = [("wgmma", (tokens, cuda_backend.WGMMA_STREAM_K_WIDE))
            for tokens, _ in cuda_backend.WGMMA_WIDE_TOKEN_TILES]  # fmt: skip
    return gemm + wgmma + wide


def _this_gpu_runs(kernel, plan) -> bool:
    index = torch.cuda.current_device()
    if kernel == "wgmma":
        return cuda_backend.uses_wgmma(index)
    return plan[1] in cuda_backend.weight_only_gemm_splits(index)  # splits > 1: clusters (sm_90)


def _skip_without_wgmma():
    if not cuda_backend.uses_wgmma(torch.cuda.current_device()):
        pytest.skip("weight_only_wgmma.cu runs on sm_90 (wgmma) with TMA tensor maps")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kernel, plan", _many_token_plans())
def test_many_token_weight_only_kernels_match_reference_and_cpu(dtype, kernel, plan):
    if not _this_gpu_runs(kernel, plan):
        pytest.skip(f"this GPU does not run {kernel} plan {plan} (sm_90: wgmma, clusters)")
    for i, (m, k, n) in enumerate(WEIGHT_ONLY_GEMM_SHAPES):
        bias_dtype = (None, dtype, torch.float32)[i % 3]
        x, CB, SCB, bias = _weight_only_case(100 + i, m, k, n, dtype, bias_dtype)
        out = torch.full((m, n), POISON[dtype], dtype=dtype, device="cuda")
        got = cuda_backend.weight_only_linear(
            x.cuda(), CB.cuda(), SCB.cuda(), None if bias is None else bias.cuda(), out=out,
            **{kernel: plan},
        ).cpu()  # fmt: skip
        _check_weight_only(got, x, CB, SCB, bias, dtype, f"{(m, k, n)} {kernel} plan {plan}")


@pytest.mark.parametrize("kernel", ["gemm", "wgmma"])
def test_many_token_weight_only_kernels_write_a_strided_output(kernel):
    plans = [p for name, p in _many_token_plans() if name == kernel and _this_gpu_runs(name, p)]
    if not plans:
        pytest.skip(f"this GPU runs no {kernel} plan")
    x, CB, SCB, bias = _weight_only_case(7, 48, 512, 100, torch.float16, torch.float16)
    wide = torch.full((48, 103), POISON[torch.float16], dtype=torch.float16, device="cuda")
    out = wide[:, 1:101]  # odd offset: outputs stored one by one, not as pairs
    for plan in plans:
        got = cuda_backend.weight_only_linear(x.cuda(), CB.cuda(), SCB.cuda(), bias.cuda(),
                                              out=out, **{kernel: plan}).cpu()  # fmt: skip
        _check_weight_only(got, x, CB, SCB, bias, torch.float16, f"strided out, {kernel} {plan}")
    assert wide[:, 0].isnan().all() and wide[:, 101:].isnan().all()


def test_weight_only_kernels_by_rows_gpu_and_alignment():
    index = torch.cuda.current_device()
    # K not a multiple of 16: the per-16-token kernel with element loads serves at any rows.
    x, CB, SCB, bias = _weight_only_case(8, 40, 1000, 70, torch.bfloat16, None)
    got = cuda_backend.weight_only_linear(x.cuda(), CB.cuda(), SCB.cuda(), None).cpu()
    _check_weight_only(got, x, CB, SCB, bias, torch.bfloat16, "unaligned K")
    with pytest.raises(ValueError, match="aligned"):
        cuda_backend.weight_only_linear(x.cuda(), CB.cuda(), SCB.cuda(), None, wgmma=(64, 1))
    # Aligned: on sm_90 from WGMMA_MIN_ROWS rows the default is weight_only_wgmma.cu's plan,
    # elsewhere from WEIGHT_ONLY_GEMM_MIN_ROWS weight_only_gemm.cu's, bit for bit.
    for m in (40, 70, 300):
        x, CB, SCB, _ = (t if t is None else t.cuda() for t in
                         _weight_only_case(12, m, 1024, 384, torch.bfloat16, None))  # fmt: skip
        if cuda_backend.wgmma_serves(index, m, 384):
            plan = {"wgmma": cuda_backend.weight_only_wgmma_plan(index, m, 384, 1024,
                                                                 "__nv_bfloat16")}  # fmt: skip
        elif m >= cuda_backend.WEIGHT_ONLY_GEMM_MIN_ROWS:
            plan = {"gemm": cuda_backend.weight_only_gemm_plan(index, m, 384, 1024,
                                                               "__nv_bfloat16")}  # fmt: skip
        else:
            plan = {"tiles": cuda_backend.weight_only_tiles(index, m, 384, "__nv_bfloat16")}
        assert torch.equal(
            cuda_backend.weight_only_linear(x, CB, SCB, None),
            cuda_backend.weight_only_linear(x, CB, SCB, None, **plan),
        ), (m, plan)


def test_weight_only_gemm_plan_splits_k_only_where_blocks_leave_sms_idle():
    index = torch.cuda.current_device()
    plan = cuda_backend.weight_only_gemm_plan
    tiles = cuda_backend.WEIGHT_ONLY_GEMM_TILES
    assert [plan(index, m, 4096, 4096)[0] for m in (17, 32, 33, 64, 65, 128, 129, 500)] == [
        tiles[0], tiles[0], tiles[1], tiles[1], tiles[1], tiles[1], tiles[2], tiles[2]]  # fmt: skip
    clusters = len(cuda_backend.weight_only_gemm_splits(index)) > 1
    # 64 blocks of 64 x 128 on a GPU of 100+ SMs: split where clusters exist.
    assert (plan(index, 128, 4096, 4096)[1] > 1) == clusters
    # Thousands of blocks, or too few K tiles to split: no split.
    assert plan(index, 2048, 28672, 8192)[1] == 1
    short = cuda_backend.WEIGHT_ONLY_GEMM_K_TILE * (2 * cuda_backend.MIN_K_TILES_PER_GEMM_SPLIT - 1)
    assert plan(index, 128, 4096, short)[1] == 1


def test_weight_only_wgmma_plan_covers_the_sms_and_splits_k_only_where_that_pays():
    _skip_without_wgmma()
    index = torch.cuda.current_device()

    def plan(index, m, n, k):  # the plans of whole tiles (stream-K: the next test)
        return cuda_backend.weight_only_wgmma_plan(index, m, n, k, stream_k=False)

    for m in (17, 32, 33, 64, 65, 128, 129, 500):
        tokens = plan(index, m, 4096, 4096)[0]
        assert tokens < 2 * m or tokens == 32, (m, tokens)  # no tile twice the rows
    # 32 blocks of 128 weight rows: split K; thousands of blocks, or few K tiles: no split.
    assert plan(index, 128, 4096, 4096)[1] > 1
    assert plan(index, 2048, 28672, 8192)[1] == 1
    short = cuda_backend.WGMMA_K_TILE * (2 * cuda_backend.MIN_K_TILES_PER_GEMM_SPLIT - 1)
    assert plan(index, 128, 4096, short)[1] == 1
    if cuda_backend.sm_count(index) == 132:  # the H100 / H200 the costs were fitted on
        assert plan(index, 128, 4096, 4096) == (64, 2)
        assert plan(index, 128, 28672, 8192) == (128, 1)
        assert plan(index, 32, 28672, 8192) == (32, 1)
        assert plan(index, 128, 11008, 4096) == (128, 1)
        assert plan(index, 256, 28672, 8192) == (128, 1)
    # The rows from which it serves: 33, or 17 for weights of 8192 rows and more.
    assert not cuda_backend.wgmma_serves(index, 32, 4096)
    assert cuda_backend.wgmma_serves(index, 33, 4096)
    assert cuda_backend.wgmma_serves(index, 17, 8192)


# ---- LLM.int8() on wgmma (int8_wgmma.cu) ----

# (m, k, n): one token, ragged token tiles, K not a multiple of the 128-column K tile (16 and 48
# columns into the last), N not a multiple of the 128 weight rows, K split across clusters where
# the plan allows it (8+ K tiles), a weight smaller than one tile.
INT8_WGMMA_SHAPES = [(5, 4096, 300), (17, 1040, 129), (33, 2048, 1000), (64, 4096, 256),
                     (100, 1072, 77), (128, 512, 384), (129, 3072, 64), (300, 1024, 200),
                     (40, 16, 5)]  # fmt: skip


def _int8_wgmma_plans():
    if cuda_backend is None:
        return []
    tiles = [(tokens, splits) for tokens, _ in cuda_backend.INT8_WGMMA_TOKEN_TILES
             for splits in cuda_backend.WGMMA_SPLITS]  # fmt: skip
    return [*tiles, (cuda_backend.INT8_WGMMA_PAIR_TILE[0], 1)]  # the pairs of blocks


def _forced_plan(monkeypatch, kernel, tile_rows=0, splits=1, weight_rows=0):
    """int8_linear's plan forced for every shape (GEMV rows excepted; the mma.sync GEMM's K
    tiles in `splits` splits; "wgmma" with `weight_rows`: int8_wgmma_tokens.cu)."""
    general = cuda_backend.plan

    def plan(index, m, n, k, **kw):
        if m <= cuda_backend.GEMV_MAX_ROWS:
            return general(index, m, n, k, **kw)
        size = -(-k // cuda_backend.K_TILE // splits) if kernel == "gemm" else 0
        return cuda_backend.Plan(kernel, tile_rows, splits, size, weight_rows)

    monkeypatch.setattr(cuda_backend, "plan", plan)
    cuda_backend._layouts.clear()


def _int8_tokens_plans():
    if cuda_backend is None:
        return []
    return [(64 * consumers, splits, rows) for rows, consumers, _ in cuda_backend.INT8_TOKENS_TILES
            for splits in cuda_backend.WGMMA_SPLITS]  # fmt: skip


def _poison_workspaces():
    """Every byte of this thread's cached workspaces 0xff (NaN as fp16 / bf16, -1 as int8)."""
    for workspace in getattr(cuda_backend._local, "workspaces", {}).values():
        workspace.fill_(0xFF)


def _int8_call_within_cpu_rounding(x, weight, bias, dtype, what):
    """int8_linear at threshold 6 on the GPU (the plan as forced; into a poisoned output, and
    again: deterministic) within the float64 reference's bound and the CPU backend's rounding.
    Returns the output (on the CPU) and the GPU arguments."""
    CB, SCB = F.quantize_weight(weight)
    args = (x.cuda(), CB.cuda(), SCB.cuda(), None if bias is None else bias.cuda())
    m, n = x.shape[0], weight.shape[0]
    out = torch.full((m, n), POISON[dtype], dtype=dtype, device="cuda")
    got = cuda_backend.int8_linear(*args, 6.0, None, out=out)
    _poison_workspaces()  # what a call reads it writes first, or it has no meaning (padded rows)
    again = cuda_backend.int8_linear(*args, 6.0, None)
    assert torch.equal(got, again), f"{what}: not deterministic, or read unwritten workspace"
    got = got.cpu()
    assert not got.isnan().any(), f"{what}: unwritten (poisoned) outputs remain"
    expected = cpu_backend.int8_linear(x, CB, SCB, bias, 6.0, None)
    bound = int8_linear_bound(x, weight, 6.0, dtype, bias)
    assert_within_bound(got, reference_linear(x, weight, bias), bound, what)
    magnitude = x.double().abs() @ weight.double().abs().t()
    eps = torch.finfo(dtype).eps
    rounding = 2 * eps * (expected.double().abs() + 1e-3 * magnitude)
    assert_within_bound(got, expected, rounding + 1e-4 * magnitude, f"{what} vs cpu")
    return got, args


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "tokens, splits, weight_rows",
    [(t, s, 0) for t, s in _int8_wgmma_plans()] + _int8_tokens_plans(),
)
def test_int8_wgmma_plans_match_the_mma_gemm_and_cpu(
    monkeypatch, dtype, tokens, splits, weight_rows
):
    """Every int8_wgmma.cu and int8_wgmma_tokens.cu (`weight_rows`) instantiation within the
    CPU's rounding and the float64 reference's bound, with 0, 3, 70 (two chunks), 700 (scattered,
    more chunks than the ring has stages) and every column an outlier; deterministic; without
    outlier columns and K unsplit bit-equal to the mma.sync GEMM (the same int32 sums and fp32
    epilogue)."""
    _skip_without_wgmma()
    generator = torch.Generator().manual_seed(tokens * 10 + splits + weight_rows)
    try:
        for m, k, n in INT8_WGMMA_SHAPES:
            for columns, bias_dtype in (
                (0, None),
                (3, dtype),
                (70, torch.float32),
                (700, None),
                (k, dtype),
            ):
                if columns > k:
                    continue  # more than K: the every-column case covers it
                x, columns = planted_outliers(m, k, min(columns, k), generator)
                x = x.to(dtype)
                weight = torch.randn(n, k, generator=generator).to(dtype)
                bias = None if bias_dtype is None else torch.randn(n, generator=generator)
                bias = None if bias is None else bias.to(bias_dtype)
                what = f"{(m, k, n)} {len(columns)} outliers, plan {(tokens, splits, weight_rows)}"
                _forced_plan(monkeypatch, "wgmma", tokens, splits, weight_rows)
                got, args = _int8_call_within_cpu_rounding(x, weight, bias, dtype, what)
                if not len(columns) and splits == 1:  # split K adds fp32 partial tiles
                    _forced_plan(monkeypatch, "gemm", 32, 1)
                    mma = cuda_backend.int8_linear(*args, 6.0, None).cpu()
                    assert torch.equal(got, mma), f"{what}: differs from int8_gemm.cu"
    finally:
        cuda_backend._layouts.clear()
    for workspace in cuda_backend._streamk_workspaces.values():
        assert not workspace[: 4 * cuda_backend.STREAMK_MAX_TILES].view(torch.int32).any()


def _dense_plans():
    """The wgmma plans with the dense outlier part: (tokens, splits, weight rows)."""
    if cuda_backend is None:
        return []
    dense_tokens = cuda_backend.INT8_WGMMA_DENSE_TILES
    dense_tiles = cuda_backend.INT8_TOKENS_DENSE_TILES
    return [(t, s, 0) for t, s in _int8_wgmma_plans() if t in dense_tokens] + [
        (t, s, r) for t, s, r in _int8_tokens_plans() if (r, t // 64) in dense_tiles
    ]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tokens, splits, weight_rows", _dense_plans())
def test_int8_wgmma_dense_outlier_part_skips_cold_tiles(
    monkeypatch, dtype, tokens, splits, weight_rows
):
    """The dense outlier part of int8_wgmma.cu and int8_wgmma_tokens.cu (`weight_rows`): more
    than a chunk of columns where some K tiles hold none: runs of columns inside a few tiles, one
    tile holding them all, the last (partial) tile, and every tile but the first; rows that fill
    no token tile; within the CPU's rounding."""
    _skip_without_wgmma()
    generator = torch.Generator().manual_seed(tokens * 10 + splits + weight_rows)
    try:
        for m, k, n in [(40, 1040, 200), (64, 2048, 128), (100, 4096, 300)]:
            for runs in (
                [(130, 60), (900, 30)],  # two tiles hot, the rest cold
                [(256, 100)],  # one tile, more than a chunk
                [(k - 80, 80)],  # the last tile (partial where k % 128 != 0)
                [(128, k - 128)],  # every tile but the first
            ):
                columns = torch.cat([torch.arange(a, a + c) for a, c in runs])
                x = torch.randn(m, k, generator=generator)
                x[:, columns] *= 20.0
                x = x.to(dtype)
                weight = torch.randn(n, k, generator=generator).to(dtype)
                bias = torch.randn(n, generator=generator).to(dtype)
                what = f"{(m, k, n)} runs {runs}, plan {(tokens, splits, weight_rows)}"
                _forced_plan(monkeypatch, "wgmma", tokens, splits, weight_rows)
                _int8_call_within_cpu_rounding(x, weight, bias, dtype, what)
    finally:
        cuda_backend._layouts.clear()


def test_int8_wgmma_plan_takes_the_smallest_tile_and_splits_k_only_where_that_pays(monkeypatch):
    _skip_without_wgmma()
    index = torch.cuda.current_device()
    plan = cuda_backend.int8_wgmma_plan
    for m in (5, 17, 32, 33, 64, 65, 128, 129, 500):
        tokens = plan(index, m, 4096, 4096)[0]
        assert tokens < 2 * m or tokens == 32, (m, tokens)
    assert plan(index, 16, 4096, 4096)[1] > 1  # 32 blocks: split K
    assert plan(index, 4096, 28672, 8192)[1] == 1  # thousands of blocks
    short = cuda_backend.WGMMA_K_TILE * (2 * cuda_backend.MIN_K_TILES_PER_GEMM_SPLIT - 1)
    assert plan(index, 128, 4096, short)[1] == 1
    # int8_linear's plan on sm_90: the wgmma kernel for fp16 / bf16 from INT8_WGMMA_MIN_ROWS.
    rows = cuda_backend.INT8_WGMMA_MIN_ROWS
    general = cuda_backend.plan(index, rows, 4096, 4096, cublas_ok=True, wgmma_ok=True)
    assert general.kernel == "wgmma"
    assert cuda_backend.plan(index, rows, 4096, 4096, cublas_ok=True).kernel != "wgmma"
    # Beyond INT8_WGMMA_MAX_ROWS the 128-token tiles while they fit one wave; beyond, from
    # INT8_WGMMA_PAIR_MIN_ROWS, the 256-token tile (cuBLAS where it is turned off or below).
    many = cuda_backend.INT8_WGMMA_MAX_ROWS + 1
    picked = cuda_backend.plan(index, many, 1024, 4096, cublas_ok=True, wgmma_ok=True)
    assert picked.kernel == "wgmma" and picked.tile_rows <= 128
    pair = cuda_backend.INT8_WGMMA_PAIR_TILE[0]
    for m in (cuda_backend.INT8_WGMMA_PAIR_MIN_ROWS, 2048):
        picked = cuda_backend.plan(index, m, 28672, 8192, cublas_ok=True, wgmma_ok=True)
        assert (picked.kernel, picked.tile_rows, picked.splits) == ("wgmma", pair, 1), (m, picked)
    below = cuda_backend.plan(index, 200, 28672, 8192, cublas_ok=True, wgmma_ok=True)
    assert below.kernel == "cublas", below
    assert cuda_backend.plan(index, 2048, 28672, 8192, cublas_ok=True).kernel == "cublas"
    monkeypatch.setattr(cuda_backend, "_PAIR_TILE", False)
    assert (
        cuda_backend.plan(index, 2048, 28672, 8192, cublas_ok=True, wgmma_ok=True).kernel
        == "cublas"
    )
    assert (
        cuda_backend.plan(index, 2048, 28672, 8192, cublas_ok=False, wgmma_ok=True).kernel
        == "wgmma"
    )
    # Unsplit plans of weights from INT8_TOKENS_MIN_WEIGHT_ROWS rows: int8_wgmma_tokens.cu, its
    # blocks as many as fill the SMs once.
    wide = cuda_backend.INT8_TOKENS_MIN_WEIGHT_ROWS
    for m, n, k in ((32, 28672, 8192), (128, 28672, 8192), (96, 11008, 4096), (128, wide, 4096)):
        picked = cuda_backend.plan(index, m, n, k, cublas_ok=True, wgmma_ok=True)
        if plan(index, m, n, k)[1] > 1:  # int8_wgmma.cu splits K: it stays
            assert not picked.weight_rows, (m, n, k, picked)
            continue
        assert picked.weight_rows and picked.splits == 1, (m, n, k, picked)
        assert picked.tile_rows == (64 if m <= 64 else 128), (m, picked)
        blocks = -(-m // picked.tile_rows) * -(-n // picked.weight_rows)
        assert blocks <= cuda_backend.sm_count(index) or picked.weight_rows == max(
            rows for rows, _, _ in cuda_backend.INT8_TOKENS_TILES
        ), (m, n, picked)
    if cuda_backend.sm_count(index) == 132:  # the H200 the plans were measured on
        for m, n, k, rows in ((128, 28672, 8192, 224), (128, 11008, 4096, 96)):
            picked = cuda_backend.plan(index, m, n, k, cublas_ok=True, wgmma_ok=True)
            assert picked == cuda_backend.Plan("wgmma", 128, 1, 0, rows), (m, n, k, picked)
    narrow = cuda_backend.plan(index, 128, wide - 128, 4096, cublas_ok=True, wgmma_ok=True)
    assert not narrow.weight_rows, narrow


def test_weight_only_wgmma_plan_takes_stream_k_where_whole_tiles_leave_sms_idle():
    _skip_without_wgmma()
    index = torch.cuda.current_device()
    plan = cuda_backend.weight_only_wgmma_plan
    sk, wide = cuda_backend.WGMMA_STREAM_K, cuda_backend.WGMMA_STREAM_K_WIDE
    # Enough tiles to fill every SM evenly and short K: clusters (no workspace, no fixing up).
    assert plan(index, 128, 4096, 4096)[1] not in (sk, wide)
    assert plan(index, 64, 4096, 4096, stream_k=False)[1] not in (sk, wide)
    if cuda_backend.sm_count(index) == 132:  # the H100 / H200 the costs were fitted on
        # 224 tiles of 8192x28672 fill 1.7 waves of 132 SMs: stream-K divides them evenly, over
        # tiles of 256 weight rows up to 64 tokens (the activations read half as often).
        assert plan(index, 32, 28672, 8192) == (32, wide)
        assert plan(index, 48, 28672, 8192) == (64, wide)
        assert plan(index, 128, 28672, 8192) == (128, sk)
        assert plan(index, 64, 4096, 11008) == (64, sk)
        assert plan(index, 128, 4096, 4096) == (64, 2)


def test_tensor_maps_are_cached_by_their_arguments_and_refuse_unaligned_rows():
    _skip_without_wgmma()
    from llmint8.backends.tensor_maps import MAP_BYTES, tensor_map_2d

    weight = torch.zeros(256, 1024, dtype=torch.int8, device="cuda")
    first = tensor_map_2d(weight, 64, 128, 64)
    assert len(first) == MAP_BYTES and first is tensor_map_2d(weight, 64, 128, 64)
    assert tensor_map_2d(weight, 64, 64, 64) != first  # another box
    assert tensor_map_2d(weight[:128], 64, 128, 64) != first  # another shape
    unaligned = torch.zeros(64, 1000, dtype=torch.int8, device="cuda")[:, :996]
    with pytest.raises(llmint8.UnsupportedDeviceError, match="cuTensorMapEncodeTiled refused"):
        tensor_map_2d(unaligned, 64, 128, 64)


@pytest.mark.parametrize(
    "kernel, splits",
    [("gemm", 1), ("gemm", 4), ("wgmma", 1), ("wgmma", 4), ("wgmma", 0), ("wgmma", -1)],
)
def test_many_token_weight_only_kernels_replay_in_cuda_graphs(kernel, splits):
    tokens = 64 if splits == -1 else 128  # -1: stream-K over wide tiles (64 tokens at most)
    plan = (cuda_backend.WEIGHT_ONLY_GEMM_TILES[2] if kernel == "gemm" else tokens, splits)
    if not _this_gpu_runs(kernel, plan):
        pytest.skip(f"this GPU does not run {kernel} plan {plan}")
    x, CB, SCB, bias = (t.cuda() for t in _weight_only_case(9, 96, 2048, 384, torch.float16,
                                                            torch.float16))  # fmt: skip
    run = lambda: cuda_backend.weight_only_linear(x, CB, SCB, bias, **{kernel: plan})  # noqa: E731
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    x.copy_(torch.randn_like(x) * 3)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, run())


# Stream-K: tiles whose K tiles lie in one block, in two, and in dozens (3 tiles of 64 K tiles
# over 132 blocks); fewer units than SMs (a block per unit); a block's range inside one tile.
STREAM_K_SHAPES = [(40, 256, 4096), (17, 8192, 300), (100, 4096, 1000), (200, 1024, 8192),
                   (33, 8192, 4096), (5, 128, 130)]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tokens, kind", [(32, 0), (64, 0), (128, 0), (32, -1), (64, -1)])
def test_stream_k_sums_tiles_split_between_blocks_in_k_order(dtype, tokens, kind):
    """Every tile split between blocks is added in K order whichever block finishes last: the
    same bits on every call, within the float64 bound, and the tile counters back at zero; for
    tiles of 128 weight rows (kind 0) and of 256 (-1: WGMMA_STREAM_K_WIDE)."""
    _skip_without_wgmma()
    for i, (m, k, n) in enumerate(STREAM_K_SHAPES):
        x, CB, SCB, bias = (t.cuda() for t in _weight_only_case(40 + i, m, k, n, dtype, dtype))
        calls = [cuda_backend.weight_only_linear(x, CB, SCB, bias, wgmma=(tokens, kind))
                 for _ in range(4)]  # fmt: skip
        first = calls[0]
        assert all(torch.equal(y, first) for y in calls), (m, k, n)
        _check_weight_only(first.cpu(), x.cpu(), CB.cpu(), SCB.cpu(), bias.cpu(), dtype,
                           f"stream-K {tokens} {(m, k, n)}")  # fmt: skip
    for workspace in cuda_backend._streamk_workspaces.values():
        counters = workspace[: 4 * cuda_backend.STREAMK_MAX_TILES].view(torch.int32)
        assert not counters.any()


def test_stream_k_keeps_a_workspace_per_stream_and_none_in_transient_calls():
    _skip_without_wgmma()
    from llmint8.backends import transient_workspaces

    x, CB, SCB, bias = (t.cuda() for t in _weight_only_case(7, 64, 2048, 512, torch.float16,
                                                            torch.float16))  # fmt: skip
    expected = cuda_backend.weight_only_linear(x, CB, SCB, bias, wgmma=(64, 0))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        on_side = cuda_backend.weight_only_linear(x, CB, SCB, bias, wgmma=(64, 0))
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(on_side, expected)
    streams = {stream for _, stream in cuda_backend._streamk_workspaces}
    assert side.cuda_stream in streams and torch.cuda.current_stream().cuda_stream in streams
    kept = len(cuda_backend._streamk_workspaces)
    other = torch.cuda.Stream()
    with torch.cuda.stream(other), transient_workspaces():
        fallback = cuda_backend.weight_only_linear(x, CB, SCB, bias, wgmma=(64, 0))
    torch.cuda.synchronize()
    assert len(cuda_backend._streamk_workspaces) == kept  # the cluster plan ran instead
    _check_weight_only(fallback.cpu(), x.cpu(), CB.cpu(), SCB.cpu(), bias.cpu(), torch.float16,
                       "transient")  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    m=st.integers(1, 300),
    k=features,
    n=features,
    dtype=st.sampled_from([torch.float16, torch.bfloat16]),
    with_bias=st.booleans(),
)
def test_weight_only_at_any_shape_matches_reference_and_cpu(seed, m, k, n, dtype, with_bias):
    x, CB, SCB, bias = _weight_only_case(seed, m, k, n, dtype, dtype if with_bias else None)
    got = F.int8_linear(x.cuda(), CB.cuda(), SCB.cuda(), None if bias is None else bias.cuda(),
                        6.0, arithmetic="weight_only").cpu()  # fmt: skip
    _check_weight_only(got, x, CB, SCB, bias, dtype, f"{(m, k, n)}")


def test_auto_takes_llm_int8_past_the_small_limit_where_int8_blocks_fill_the_gpu(monkeypatch):
    """On sm_90 a weight whose output rows make int8_wgmma.cu blocks for WGMMA_INT8_FILL_SHARE of
    the SMs takes LLM.int8() past its size's limit in WGMMA_INT8_FILLS_ROW_LIMITS
    (WGMMA_INT8_FILLS_MAX_ROWS beyond); with fewer blocks its size's weight-only limit holds."""
    _skip_without_wgmma()
    generator = torch.Generator().manual_seed(3)
    CB, _ = F.quantize_weight(torch.randn(300, 512, generator=generator))
    CB = CB.cuda()
    monkeypatch.setattr(cuda_backend, "WGMMA_WEIGHT_ONLY_ROW_LIMITS", ((1 << 30, 40),))
    monkeypatch.setattr(cuda_backend, "WGMMA_INT8_FILLS_ROW_LIMITS", ((300 * 512 - 1, 24),))
    monkeypatch.setattr(cuda_backend, "WGMMA_INT8_FILLS_MAX_ROWS", 16)
    monkeypatch.setattr(cuda_backend, "WGMMA_INT8_FILL_SHARE", 0.5)
    # 300 rows make 3 blocks: half of 6 SMs (LLM.int8() past 16 rows), less than half of 7 (40).
    for sms, limit in ((6, 16), (7, 40)):
        monkeypatch.setattr(cuda_backend, "sm_count", lambda index, _sms=sms: _sms)
        for m, weight_only in ((limit, True), (limit + 1, False)):
            x = (torch.randn(m, 512, generator=generator) * 3).half().cuda()
            assert cuda_backend.prefers_weight_only(x, CB) == weight_only, (sms, m)
    assert cuda_backend.weight_only_row_limit(300 * 512, wgmma=True, int8_fills=True) == 16
    small = 300 * 512 - 1  # within the first limit's size
    assert cuda_backend.weight_only_row_limit(small, wgmma=True, int8_fills=True) == 24
    assert cuda_backend.weight_only_row_limit(300 * 512, wgmma=True) == 40


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_auto_takes_weight_only_for_few_fp16_rows_and_llm_int8_else(monkeypatch, size):
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(300, 512, generator=generator)
    CB, SCB = (t.cuda() for t in F.quantize_weight(weight))
    elements = 300 * 512
    # This weight counts as one of the first limit's size, of the second's, or as a large one.
    limits = {"small": ((elements, 40), (elements, 24)),
              "medium": ((elements - 1, 40), (elements, 24)),
              "large": ((elements - 1, 40), (elements - 1, 24))}[size]  # fmt: skip
    # The same limits for GPUs with and without weight_only_wgmma.cu (their own tables).
    monkeypatch.setattr(cuda_backend, "WEIGHT_ONLY_ROW_LIMITS", limits)
    monkeypatch.setattr(cuda_backend, "WGMMA_WEIGHT_ONLY_ROW_LIMITS", limits)
    monkeypatch.setattr(cuda_backend, "WGMMA_WEIGHT_ONLY_MAX_ROWS", 16)
    monkeypatch.setattr(cuda_backend, "WEIGHT_ONLY_MAX_ROWS", 16)
    limit = {"small": 40, "medium": 24, "large": 16}[size]
    assert cuda_backend.weight_only_row_limit(elements) == limit
    assert cuda_backend.weight_only_row_limit(elements, wgmma=True) == limit
    cases = [(1, torch.float16, True), (limit, torch.bfloat16, True),
             (limit + 1, torch.float16, False), (4, torch.float32, False)]  # fmt: skip
    for m, dtype, weight_only in cases:
        # five outlier columns: "auto" LLM.int8() keeps them (many would go weight-only too)
        x = torch.randn(m, 512, generator=generator)
        x[:, 100:105] *= 10.0
        x = x.to(dtype).cuda()
        assert cuda_backend.prefers_weight_only(x, CB) == weight_only, (m, dtype)
        auto = F.int8_linear(x, CB, SCB, threshold=6.0)
        chosen = "weight_only" if weight_only else "int8"
        assert torch.equal(auto, F.int8_linear(x, CB, SCB, threshold=6.0, arithmetic=chosen)), (
            m, dtype)  # fmt: skip


def test_weight_only_error_on_cuda_is_below_llm_int8s():
    generator = torch.Generator().manual_seed(4)
    x, _ = planted_outliers(16, 4096, 6, generator)
    weight = torch.randn(2048, 4096, generator=generator)
    exact = reference_linear(x.half(), weight.half())
    CB, SCB = (t.cuda() for t in F.quantize_weight(weight.half()))
    errors = {}
    for arithmetic in ("int8", "weight_only"):
        y = F.int8_linear(x.half().cuda(), CB, SCB, threshold=6.0, arithmetic=arithmetic)
        errors[arithmetic] = ((y.double().cpu() - exact).norm() / exact.norm()).item()
    assert errors["weight_only"] < 0.9 * errors["int8"], errors


@pytest.mark.parametrize("m", [6, 40, 100])  # each weight-only kernel's rows
@pytest.mark.parametrize("last", [False, True])
def test_weight_only_nan_rows_stay_in_their_row(m, last):
    """A NaN stays in its token's outputs, also in the last token's: the kernels' token tiles past
    M read that row again (weight_only_linear.cu's unchecked loads), and their sums must not reach
    any output that is written."""
    CB, SCB = (t.cuda() for t in F.quantize_weight(torch.randn(40, 256)))
    x = torch.randn(m, 256, device="cuda", dtype=torch.float16)
    clean = F.int8_linear(x, CB, SCB, arithmetic="weight_only")
    row = m - 1 if last else 2
    x[row, 7] = float("nan")
    y = F.int8_linear(x, CB, SCB, arithmetic="weight_only")
    assert torch.isnan(y[row]).all()
    others = [i for i in range(m) if i != row]
    assert not torch.isnan(y[others]).any()
    assert torch.equal(y[others], clean[others])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [True, False])
def test_prepared_forwards_equal_the_general_path(dtype, with_bias):
    """Eager forwards that need no gradient run a launch prepared once per input shape
    (F.prepared_linear): bit for bit the general path's output, for each weight-only kernel and
    for inputs at new addresses on every call (the TMA kernel's tensor map moved to each), and
    where "auto" runs LLM.int8() its prepared launches (tests/backends/test_cuda_prepared.py
    has their cases)."""
    torch.manual_seed(5)
    linear = nn.Linear(512, 320, bias=with_bias).to(dtype)
    layer = llmint8.nn.Linear8bitLt(512, 320, bias=with_bias, has_fp16_weights=False,
                                    threshold=6.0)  # fmt: skip
    layer.load_state_dict(linear.state_dict())
    layer = layer.cuda()
    weight = layer.weight
    seen = set()
    for shape in [(1, 512), (16, 512), (2, 20, 512), (100, 512), (200, 512), (300, 512)]:
        inputs = [torch.randn(shape, device="cuda", dtype=dtype) * 2 for _ in range(3)]
        with torch.no_grad():
            outputs = [layer(x) for x in inputs]
        for x, y in zip(inputs, outputs):
            general = F.int8_linear(x, weight, weight.SCB, layer.bias, 6.0)
            assert torch.equal(y, general), shape
        x2d = inputs[0].reshape(-1, 512)
        key = (inputs[0].shape, dtype, x2d.get_device(), "auto", 6.0, True)
        _, prepared = layer._prepared_forwards[key]
        assert prepared is not None, shape
        if cuda_backend.prefers_weight_only(x2d, weight):
            seen.add(cuda_backend._weight_only_launch(x2d, weight, weight.SCB, None, 0, 320)[0])
        # The same shape 2 bytes off a 16-byte boundary: the unaligned kernel, not a fault.
        storage = torch.randn(inputs[0].numel() + 1, device="cuda", dtype=dtype)
        shifted = storage[1:].view(shape)
        with torch.no_grad():
            y = layer(shifted)
        assert torch.equal(y, F.int8_linear(shifted, weight, weight.SCB, layer.bias, 6.0)), shape
    assert len(seen) >= 2  # the per-16-token kernel and a many-token one


def test_prepared_forward_replays_in_cuda_graphs_and_follows_reloaded_weights():
    torch.manual_seed(6)
    layer = llmint8.nn.Linear8bitLt(512, 384, has_fp16_weights=False, threshold=6.0).cuda()
    x = torch.randn(100, 512, device="cuda", dtype=torch.float16)
    weight = layer.weight
    with torch.no_grad():
        layer(x)  # prepares (and compiles) before the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = layer(x)
        x.copy_(torch.randn_like(x))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, F.int8_linear(x, weight, weight.SCB, layer.bias, 6.0))
        other = llmint8.nn.Linear8bitLt(512, 384, has_fp16_weights=False, threshold=6.0).cuda()
        layer.load_state_dict(other.state_dict())
        reloaded = layer(x)
        weight = layer.weight
        assert torch.equal(reloaded, F.int8_linear(x, weight, weight.SCB, layer.bias, 6.0))
        assert torch.equal(reloaded, other(x)) and not torch.equal(reloaded, captured)
