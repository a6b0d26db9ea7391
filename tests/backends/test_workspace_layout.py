"""The CUDA backend's workspace layout (no GPU needed): the regions of one call's scratch memory
lie in order without overlapping, and the wgmma plans' int8 activations and Xo have room for
whole token tiles, the rows their tensor maps cover."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

cuda = pytest.importorskip("llmint8.backends.cuda")

PLANS = [
    cuda.Plan("wgmma", 32, 1),
    cuda.Plan("wgmma", 64, 2),
    cuda.Plan("wgmma", 128, 4),
    cuda.Plan("wgmma", 64, 1, 0, 96),
    cuda.Plan("wgmma", 128, 1, 0, 224),
    cuda.Plan("gemm", 32, 2, 4),
    cuda.Plan("cublas", 64),
    cuda.Plan("gemv", 8, 2, 512),
]


@settings(max_examples=200, deadline=None)
@given(
    m=st.integers(1, 700),
    n=st.integers(1, 5000),
    k=st.integers(1, 12000),
    plan=st.sampled_from(PLANS),
    detect=st.booleans(),
    gather=st.booleans(),
    itemsize=st.sampled_from([2, 4]),
)
def test_regions_are_ordered_and_hold_whole_token_tiles(m, n, k, plan, detect, gather, itemsize):
    ws = cuda._Workspace.of(m, n, k, plan, detect, gather, itemsize)
    rows = m
    if plan.kernel == "wgmma":
        rows = cuda._tile_rows(m, plan.tile_rows)
        assert rows % plan.tile_rows == 0 and m <= rows < m + plan.tile_rows
    assert ws.q + rows * k <= ws.absmax  # the int8 activations, padded rows included
    assert ws.absmax + 4 * m <= ws.mask
    assert ws.mask + ws.zeroed_bytes <= ws.partials
    assert ws.partials <= ws.product <= ws.count < ws.xc
    if gather:
        assert ws.ldc >= k and ws.ldc % cuda.OUTLIER_CHUNK == 0
        assert ws.xc + itemsize * rows * ws.ldc <= ws.wc  # Xo, padded rows included
    assert ws.wc <= ws.hot <= ws.size
    for offset in (ws.absmax, ws.mask, ws.xc, ws.wc):
        assert offset % 256 == 0
