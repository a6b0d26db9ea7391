"""The CPU backend's exact int8 product: the core's (few rows) and float BLAS in K slices (many
rows) give the exact int32 sums, so LLM.int8()'s outputs are the bits torch._int_mm's gave."""

from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import llmint8
from llmint8 import _core
from llmint8.backends import cpu

PATHS = ("core", "float32", "float64")


@contextmanager
def product_path(path: str):
    """Every product through one path: the core's, float32 slices, or float64."""
    core = path == "core"
    with (
        mock.patch.object(cpu, "CORE_PRODUCT_KERNEL", cpu.CORE_PRODUCT_KERNEL if core else ""),
        mock.patch.object(cpu, "CORE_PRODUCT_MAX_ROWS", 1 << 30 if core else -1),
        mock.patch.object(cpu, "CORE_PRODUCT_LONG_K", 0 if core else 1 << 30),
    ):
        if path != "float64":
            yield
            return
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("medium")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(previous)


def _operands(seed, m, k, n, extremes):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
    b = torch.randint(-128, 128, (n, k), generator=generator, dtype=torch.int8)
    if extremes and m and n:
        a[0], b[0] = -128, -128  # the largest sums: 2**14 per column
    return a, b


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(0, 70),
    k=st.sampled_from([0, 1, 15, 16, 17, 31, 100, 1023, 1024, 1025, 2100]),
    n=st.integers(0, 40),
    extremes=st.booleans(),
    path=st.sampled_from(PATHS),
)
def test_every_path_gives_the_exact_sums(seed, m, k, n, extremes, path):
    a, b = _operands(seed, m, k, n, extremes)
    with product_path(path):
        got = cpu.int8_matmul(a, b)
    assert got.dtype == torch.int32 and got.shape == (m, n)
    assert torch.equal(got.long(), a.long() @ b.long().t()), path


@pytest.mark.parametrize("path", PATHS)
def test_strided_operands(path):
    a, b = _operands(3, 24, 1100, 33, True)
    expected = a.long() @ b.long().t()
    with product_path(path):
        got = cpu.int8_matmul(a.t().contiguous().t(), b[:, :].t().contiguous().t())
        sliced = cpu.int8_matmul(a[::2], b[1::3])
    assert torch.equal(got.long(), expected)
    assert torch.equal(sliced.long(), expected[::2, 1::3])


def test_the_core_product_threads_large_products_exactly():
    a, b = _operands(5, 3, 4096, 4096, True)  # 3 * 4096 * 4096 products: the threaded path
    assert torch.equal(cpu.int8_matmul(a, b).long(), a.long() @ b.long().t())


@pytest.mark.parametrize("m, k, n", [(2, 64, 1), (16, 64, 17), (37, 1024, 300), (300, 4096, 33)])
def test_whole_tiles_give_the_exact_sums(m, k, n):
    """Rows of whole 64-column tiles from 2 activation rows: AMX's tiles where the CPU has them
    (`_core.int8_product_kernel() == "amx"`), threaded, with int8's extremes."""
    a, b = _operands(m * 7 + n, m, k, n, True)
    assert torch.equal(cpu.int8_matmul(a, b).long(), a.long() @ b.long().t())


def test_the_path_depends_on_the_rows():
    assert cpu.CORE_PRODUCT_KERNEL in ("amx", "avx512vnni", "avx2", "portable")
    for kernel in ("amx", "avx512vnni", "avx2"):
        with mock.patch.object(cpu, "CORE_PRODUCT_KERNEL", kernel):
            assert cpu.uses_core_product(8192, 1536, 384)
    with mock.patch.object(cpu, "CORE_PRODUCT_KERNEL", "portable"):
        _the_portable_rule()


def _the_portable_rule():
    assert cpu.uses_core_product(1, 4096, 4096)
    assert cpu.uses_core_product(cpu.CORE_PRODUCT_MAX_ROWS, 384, 384)
    assert not cpu.uses_core_product(cpu.CORE_PRODUCT_MAX_ROWS + 1, 1536, 384)
    assert cpu.uses_core_product(4096, 4096, cpu.CORE_PRODUCT_LONG_K)


@pytest.mark.parametrize("m", [1, 7, 100])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_int8_linear_keeps_the_bits_of_the_int32_product(m, threshold):
    """LLM.int8()'s outputs on the CPU are the same bits as with torch._int_mm's product (the
    backend's product before this one): both sums are exact."""
    generator = torch.Generator().manual_seed(m)
    x = torch.randn(m, 1040, generator=generator)
    x[:, [3, 700]] *= 20
    weight = torch.randn(300, 1040, generator=generator)
    CB, SCB = llmint8.functional.quantize_weight(weight)
    bias = torch.randn(300, generator=generator)
    got = cpu.int8_linear(x, CB, SCB, bias, threshold, None)
    with (
        mock.patch.object(cpu, "int8_matmul", lambda a, b: torch._int_mm(a, b.t())),
        mock.patch.object(cpu, "uses_core_product", lambda m, n, k: False),
    ):
        before = cpu.int8_linear(x, CB, SCB, bias, threshold, None)
    assert torch.equal(got, before)


def _torch_ops_forward(x, CB, SCB, bias, threshold, cols):
    """The backend's forward through its PyTorch ops (`quantize_rows`, the scaling), the product
    exact in float BLAS slices, then the core's epilogue: what the core's forward must give bit
    for bit."""
    with mock.patch.object(cpu, "uses_core_product", lambda m, n, k: False):
        return cpu.int8_linear(x, CB, SCB, bias, threshold, cols)


def _outlier_sums(x_cols, weight_cols):
    """The outlier columns' product as the epilogue defines it, written out: float64 sums over
    the columns in their order (each product of two float32 values exact), rounded to float32."""
    sums = torch.zeros(x_cols.shape[0], weight_cols.shape[1], dtype=torch.float64)
    for col in range(x_cols.shape[1]):
        sums += x_cols[:, col, None].double() * weight_cols[None, col, :].double()
    return sums.float()


def _reference_forward(x, CB, SCB, bias, threshold, cols):
    """LLM.int8()'s CPU forward from PyTorch ops alone: `quantize_rows`, the int64 product, the
    scaling, the outlier columns' float64 sums and the bias in float32."""
    q, row_absmax, cols = cpu.quantize_rows(x, threshold, cols)
    sums = (q.long() @ CB.long().t()).to(torch.int32)
    out = sums.float() * (row_absmax[:, None] / 127.0) * (SCB[None, :] / 127.0)
    if cols.numel():
        weight_cols = CB[:, cols].float() * (SCB[:, None] / 127.0)
        out += _outlier_sums(x[:, cols].float(), weight_cols.t())
    if bias is not None:
        out += bias.float()
    return out.to(x.dtype)


# A NaN with bits in its low byte (the core's rounding reads the low byte of x + 1.5 * 2**23).
PAYLOAD_NAN = torch.tensor([0x7FC000FF], dtype=torch.int32).view(torch.float32).item()


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(0, 9),
    k=st.sampled_from([0, 1, 15, 16, 17, 100, 1040]),
    n=st.integers(0, 24),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    threshold=st.sampled_from([0.0, -1.0, 1.5, 6.0, float("nan")]),
    static=st.booleans(),
    special=st.sampled_from([None, float("nan"), PAYLOAD_NAN, float("inf"), -float("inf"), 0.0]),
    with_bias=st.booleans(),
)
def test_the_cores_forward_gives_the_bits_of_the_torch_ops(
    seed, m, k, n, dtype, threshold, static, special, with_bias
):
    """Where the core multiplies, it also quantizes and scales (`_core.int8_linear`): every
    output the same bits as the backend's PyTorch ops give (NaN where they give NaN), with
    thresholds that find columns or not, static columns, float32 / float16 / bfloat16 inputs,
    rows of zeros, NaN and infinities."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=generator) * 3).to(dtype)
    if special is not None and m and k:
        x[m // 2, k // 3] = special
    if m > 1:
        x[-1] = 0.0
    CB, SCB = llmint8.functional.quantize_weight(torch.randn(n, k, generator=generator))
    bias = torch.randn(n, generator=generator).to(dtype) if with_bias else None
    cols = None
    if static and k:
        cols = torch.randint(0, k, (min(k, 3),), generator=generator)
    assert cpu.uses_core_product(m, n, k)
    got = cpu.int8_linear(x, CB, SCB, bias, threshold, cols)
    want = _torch_ops_forward(x, CB, SCB, bias, threshold, cols)
    assert got.dtype == want.dtype == dtype and got.shape == want.shape == (m, n)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    reference = _reference_forward(x, CB, SCB, bias, threshold, cols)
    torch.testing.assert_close(got, reference, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("m", [1, 16, 64])
def test_the_cores_forward_on_a_layer_with_outliers(m):
    """A 4096-column layer with planted outlier columns: the core's forward (threaded product
    past 2**25 products) gives the PyTorch ops' bits and finds the planted columns."""
    generator = torch.Generator().manual_seed(m)
    x = torch.randn(m, 4096, generator=generator).half()
    x[:, [5, 900, 4095]] *= 20
    x[0, [5, 900, 4095]] = torch.tensor([7.0, -9.0, 12.0]).half()  # outliers in every call
    CB, SCB = llmint8.functional.quantize_weight(torch.randn(1024, 4096, generator=generator))
    bias = torch.randn(1024, generator=generator).half()
    _, found = cpu._core_forward(x, CB, SCB, bias, 6.0, None)
    assert {5, 900, 4095} <= set(found.tolist())
    got = cpu.int8_linear(x, CB, SCB, bias, 6.0, None)
    assert torch.equal(got, _torch_ops_forward(x, CB, SCB, bias, 6.0, None))
    assert torch.equal(got, _reference_forward(x, CB, SCB, bias, 6.0, None))


def test_the_cores_forward_refuses_what_does_not_fit():
    x, CB = np.zeros((2, 8), dtype=np.float32), np.zeros((3, 8), dtype=np.int8)
    SCB = np.ones(3, dtype=np.float32)
    with pytest.raises(llmint8.ShapeError, match="x has 9 columns"):
        _core.int8_linear(np.zeros((2, 9), dtype=np.float32), "float32", CB, SCB, 6.0)
    with pytest.raises(llmint8.ShapeError, match='kind "float64"'):
        _core.int8_linear(x, "float64", CB, SCB, 6.0)
    with pytest.raises(llmint8.ShapeError, match="C-contiguous"):
        _core.int8_linear(np.zeros((8, 2), dtype=np.float32).T, "float32", CB, SCB, 6.0)
    with pytest.raises(llmint8.ShapeError, match="scales"):
        _core.int8_linear(x, "float32", CB, np.ones(2, dtype=np.float32), 6.0)
    with pytest.raises(llmint8.OutlierError, match="column 8"):
        _core.int8_linear(x, "float32", CB, SCB, 6.0, np.array([8], dtype=np.int64))
    with pytest.raises(llmint8.OutlierError, match="negative"):
        _core.int8_linear(x, "float32", CB, SCB, 6.0, np.array([-1], dtype=np.int64))
    with pytest.raises(TypeError):
        _core.int8_linear(x.astype(np.float64), "float32", CB, SCB, 6.0)
    with pytest.raises(llmint8.ShapeError, match="2 bias values"):
        _core.int8_linear(x, "float32", CB, SCB, 6.0, None, np.ones(2, dtype=np.float32))
    with pytest.raises(llmint8.ShapeError, match="x must be 2-D"):
        _core.int8_linear(np.zeros(8, dtype=np.float32), "float32", CB, SCB, 6.0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(0, 9),
    n=st.integers(0, 70),
    c=st.integers(0, 12),
    bias_dtype=st.sampled_from([None, torch.float32, torch.float16, torch.bfloat16]),
)
def test_the_epilogue_sums_the_outlier_columns_in_float64(seed, m, n, c, bias_dtype):
    """`_core.linear_epilogue`: the outlier columns' products summed in float64 in the columns'
    order, rounded once, added to the scaled product, then the bias widened to float32; the same
    bits as those steps written out in PyTorch, and within float32's rounding of the exact sum."""
    generator = torch.Generator().manual_seed(seed)
    out = torch.randn(m, n, generator=generator) * 5
    x_cols = torch.randn(m, c, generator=generator) * 40
    weight_cols = torch.randn(c, n, generator=generator) * 0.05
    bias = None if bias_dtype is None else torch.randn(n, generator=generator).to(bias_dtype)
    want = out.clone()
    if c:
        want += _outlier_sums(x_cols, weight_cols)
    if bias is not None:
        want += bias.float()
    got = out.clone()
    cpu._add_outliers_and_bias(got, x_cols, weight_cols, bias)
    assert torch.equal(got, want)
    exact = out.double() + x_cols.double() @ weight_cols.double()
    if bias is not None:
        exact += bias.double()
    bound = 3 * torch.finfo(torch.float32).eps * (exact.abs() + out.double().abs() + 1e-30)
    assert ((got.double() - exact).abs() <= bound + 1e-6).all()


def test_the_epilogue_refuses_what_does_not_fit():
    out = np.zeros((2, 3), dtype=np.float32)
    x_cols, weight_cols = np.ones((2, 4), dtype=np.float32), np.ones((4, 3), dtype=np.float32)
    with pytest.raises(llmint8.ShapeError, match="weight_cols"):
        _core.linear_epilogue(out, x_cols, np.ones((3, 4), dtype=np.float32))
    with pytest.raises(llmint8.ShapeError, match="bias must be 1-D"):
        _core.linear_epilogue(out, x_cols, weight_cols, np.ones((1, 3), dtype=np.float32))
    with pytest.raises(llmint8.ShapeError, match="2 bias values"):
        _core.linear_epilogue(out, x_cols, weight_cols, np.ones(2, dtype=np.float32))
    with pytest.raises(llmint8.ShapeError, match='kind "int8"'):
        _core.linear_epilogue(out, x_cols, weight_cols, np.ones(3, dtype=np.float32), "int8")
    with pytest.raises(llmint8.ShapeError, match="C-contiguous"):
        _core.linear_epilogue(out, np.ones((4, 2), dtype=np.float32).T, weight_cols)


def test_the_core_refuses_operands_that_do_not_fit():
    a = np.zeros((2, 8), dtype=np.int8)
    with pytest.raises(llmint8.ShapeError, match="columns differ"):
        _core.int8_product(a, np.zeros((3, 9), dtype=np.int8))
    with pytest.raises(llmint8.ShapeError, match="C-contiguous"):
        _core.int8_product(np.zeros((8, 2), dtype=np.int8).T, np.zeros((3, 8), dtype=np.int8))
    with pytest.raises(TypeError):
        _core.int8_product(a.astype(np.int16), np.zeros((3, 8), dtype=np.int8))


def test_large_outputs_reuse_freed_buffers_and_never_one_in_use():
    """Outputs of at least a MiB come from the core's pool (`cpu.free_kept_buffers`): a
    buffer returns to it only once its array and tensors are freed, the next output of its size
    writes every value of it again, and an output still in use is never handed out."""
    generator = torch.Generator().manual_seed(7)
    CB, SCB = llmint8.functional.quantize_weight(torch.randn(1024, 256, generator=generator))
    bias = torch.randn(1024, generator=generator)
    inputs = [torch.randn(300, 256, generator=generator) * 3 for _ in range(3)]
    for x in inputs:
        x[:, [4, 99]] *= 20
    assert 300 * 1024 * 4 >= 1 << 20
    cpu.free_kept_buffers()
    first = cpu.int8_linear(inputs[0], CB, SCB, bias, 6.0, None)
    kept = first.clone()
    second = cpu.int8_linear(inputs[1], CB, SCB, bias, 6.0, None)
    assert second.data_ptr() != first.data_ptr()
    assert torch.equal(first, kept)
    address = first.data_ptr()
    view = first[1:]  # a view keeps the buffer in use
    del first
    third = cpu.int8_linear(inputs[2], CB, SCB, bias, 6.0, None)
    assert third.data_ptr() not in (address, second.data_ptr())
    assert torch.equal(view, kept[1:])
    del view
    fourth = cpu.int8_linear(inputs[0], CB, SCB, bias, 6.0, None)
    assert fourth.data_ptr() == address  # the freed buffer, written again
    for got, x in ((second, inputs[1]), (third, inputs[2]), (fourth, inputs[0])):
        assert torch.equal(got, _reference_forward(x, CB, SCB, bias, 6.0, None))
    del second, third, fourth, got  # the loop variable held the last
    assert cpu.free_kept_buffers() >= 3 * 300 * 1024 * 4
    assert cpu.free_kept_buffers() == 0
