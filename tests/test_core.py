"""The Rust core's packing and outlier bookkeeping, seen from Python."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import llmint8
from llmint8 import _core


@given(hnp.arrays(np.int8, st.integers(0, 500), elements=st.integers(-8, 7)))
def test_int4_pack_unpack_is_the_identity(values):
    packed = _core.pack_int4(values)
    assert packed.dtype == np.uint8 and len(packed) == (len(values) + 1) // 2
    assert np.array_equal(_core.unpack_int4(packed, len(values)), values)


def test_int4_rejects_out_of_range():
    with pytest.raises(llmint8.PackingError, match="index 1"):
        _core.pack_int4(np.array([0, 8], dtype=np.int8))
    with pytest.raises(llmint8.PackingError):
        _core.unpack_int4(np.zeros(1, dtype=np.uint8), 3)


@given(
    hnp.arrays(np.int8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=70)),
    st.integers(1, 33),
    st.integers(1, 65),
)
def test_tile_untile_is_the_identity(matrix, tile_rows, tile_cols):
    tiled = _core.tile_int8(matrix, tile_rows, tile_cols)
    rows, cols = matrix.shape
    padded = (-(-rows // tile_rows) * tile_rows) * (-(-cols // tile_cols) * tile_cols)
    assert tiled.shape == (padded,)
    assert np.array_equal(_core.untile_int8(tiled, rows, cols, tile_rows, tile_cols), matrix)
    # The first tile holds the top-left corner, row-major.
    if rows and cols:
        corner = matrix[:tile_rows, :tile_cols]
        first = tiled[: tile_rows * tile_cols].reshape(tile_rows, tile_cols)
        assert np.array_equal(first[: corner.shape[0], : corner.shape[1]], corner)


def test_tile_rejects_bad_shapes():
    with pytest.raises(llmint8.PackingError):
        _core.tile_int8(np.zeros((2, 2), np.int8), 0, 2)
    with pytest.raises(llmint8.PackingError):
        _core.untile_int8(np.zeros(3, np.int8), 2, 2, 2, 2)


@given(st.lists(hnp.arrays(np.bool_, 40), min_size=1, max_size=20), st.floats(0, 1))
def test_outlier_stats_count_batches(masks, fraction):
    stats = _core.OutlierStats(40)
    for mask in masks:
        if len(masks) % 2:
            stats.observe_mask(mask)
        else:
            stats.observe_indices(np.flatnonzero(mask).astype(np.int64))
    counts = np.sum(masks, axis=0)
    assert stats.batches == len(masks)
    assert np.array_equal(stats.counts(), counts)
    needed = max(1, int(np.ceil(fraction * len(masks))))
    assert np.array_equal(stats.static_columns(fraction), np.flatnonzero(counts >= needed))


@given(st.lists(hnp.arrays(np.bool_, 16), min_size=2, max_size=8))
def test_merging_equals_observing_everything(masks):
    half = len(masks) // 2
    a, b, whole = _core.OutlierStats(16), _core.OutlierStats(16), _core.OutlierStats(16)
    for m in masks[:half]:
        a.observe_mask(m)
    for m in masks[half:]:
        b.observe_mask(m)
    for m in masks:
        whole.observe_mask(m)
    a.merge(b)
    assert np.array_equal(a.counts(), whole.counts()) and a.batches == whole.batches


@given(
    hnp.arrays(np.int64, st.integers(0, 50), elements=st.integers(0, 29)),
    hnp.arrays(np.int64, st.integers(0, 50), elements=st.integers(0, 29)),
)
def test_index_sets(a, b):
    assert np.array_equal(_core.sorted_unique(a, 30), np.unique(a))
    assert np.array_equal(_core.union_indices(a, b, 30), np.union1d(a, b))
    mask = np.zeros(30, bool)
    mask[a] = True
    assert np.array_equal(_core.mask_to_indices(mask), np.unique(a))


def test_outlier_errors_are_named():
    stats = _core.OutlierStats(4)
    with pytest.raises(llmint8.OutlierError, match="outside"):
        stats.observe_indices(np.array([4], np.int64))
    with pytest.raises(llmint8.OutlierError):
        stats.observe_mask(np.zeros(5, bool))
    with pytest.raises(llmint8.OutlierError):
        stats.merge(_core.OutlierStats(5))
    with pytest.raises(llmint8.OutlierError):
        stats.static_columns(2.0)
