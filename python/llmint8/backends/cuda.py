"""The CUDA backend: LLM.int8() on torch tensors' memory with the kernels of `cuda_kernels`.

Kernel choice for the int8 product (`plan`): one or a few rows (M <= GEMV_MAX_ROWS), or GPUs
without int8 ``mma.sync.m16n8k32`` (sm_75), go to the dp4a kernel that streams the weights once
(``int8_gemv.cu``); from CUBLAS_MIN_ROWS rows on (K a multiple of 16, N of 4) cuBLAS's int8 GEMM
(``cublasGemmEx``, wgmma on Hopper, on PyTorch's handle: `cublas`, capturable into CUDA graphs)
computes the int32 product and the epilogue kernel (``int8_gemm.cu`` MODE 2) turns it into the
output; other shapes go to the tensor-core GEMM with the fused epilogue (``int8_gemm.cu``), with
a row tile of 32, 64 or 128 to waste as few tensor-core cycles on padding rows as possible, and
with K split across blocks when the tiles alone would leave SMs idle. On sm_90 (H100, H200) fp16
and bf16 calls of aligned operands from INT8_WGMMA_MIN_ROWS rows go to ``int8_wgmma.cu`` instead:
wgmma int8 fed by TMA with the epilogue and the outlier product fused (`int8_wgmma_plan`), or,
where that plan leaves K unsplit on a weight of INT8_TOKENS_MIN_WEIGHT_ROWS rows or more, to its
form with the tokens as wgmma's A operand (``int8_wgmma_tokens.cu``, `int8_tokens_rows`); from
INT8_WGMMA_PAIR_MIN_ROWS rows, where its 128-token tiles take more than one wave, to its 256-token
tile in pairs of blocks (INT8_WGMMA_PAIR_TILE), not cuBLAS.

A forward makes two allocations (the output and one workspace for the int8 activations, row
scales, outlier mask, split-K partials and gathered outlier columns), at most one memset and two
to four launches, and never synchronises with the host: outlier columns travel as a device
bitmask. For the GEMM plans a gather kernel copies the outlier columns of the activations and
the weight into dense matrices (room for all K columns: the workspace holds up to one more copy
of the activations and of the int8 weight) and zeroes them in the int8 activations; the GEMM's
epilogue multiplies them on tensor cores as a second pipelined product. There the gather kernel
is the mask's last reader, and the mask is the stream's own (`_stream_mask`), left zeroed by it
(or right after it by int8_wgmma.cu): no memset. The GEMV (few rows) zeroes them in its staged
activations and walks its block's list of them instead.
"""

from __future__ import annotations

import math
import os
import threading
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from . import cublas, tensor_maps, workspaces_are_transient
from .cpu import weight_only_linear as dense_weight_only_linear
from .cuda_kernels import (
    C_TYPES,
    GEMM_TILE_COLS,
    GEMV_ROW_GROUPS,
    INT8_TOKENS_DENSE_TILES,
    INT8_TOKENS_TILES,
    INT8_WGMMA_DENSE_TILES,
    INT8_WGMMA_PAIR_TILE,
    INT8_WGMMA_TOKEN_TILES,
    KERNEL_DIR,  # noqa: F401  (re-exported: where the shipped kernels live)
    MMA_CAPABILITY,
    OUTLIER_CHUNK,
    SPLIT_CAPABILITY,
    THREADS,
    WEIGHT_ONLY_GEMM_K_TILE,
    WEIGHT_ONLY_GEMM_SPLITS,
    WEIGHT_ONLY_GEMM_TILES,
    WEIGHT_ONLY_LONG_K,
    WEIGHT_ONLY_LONG_RING_TILES,
    WEIGHT_ONLY_NARROW_RING_TILES,
    WEIGHT_ONLY_RING_TILES,
    WEIGHT_ONLY_TILES,
    WEIGHT_ONLY_TMA_TILES,
    WGMMA_CAPABILITY,
    WGMMA_K_TILE,
    WGMMA_SPLITS,
    WGMMA_STREAM_K,
    WGMMA_STREAM_K_WIDE,
    WGMMA_THREADS,
    WGMMA_TOKEN_TILES,
    WGMMA_WEIGHT_ROWS,
    WGMMA_WIDE_TILE_ROWS,
    WGMMA_WIDE_TOKEN_TILES,
    Kernel,
    check_device,
    cupy_module,
    current_stream,
    gemm_name,
    gemm_shared_memory,
    gemv_name,
    int8_tokens_name,
    int8_tokens_shared_memory,
    int8_wgmma_name,
    int8_wgmma_shared_memory,
    kernel,
    launches_dependent,
    quantize_name,
    quantize_threads,
    shared_memory_per_block,
    shared_memory_per_sm,
    sm_count,
    weight_only_gemm_name,
    weight_only_gemm_rows,
    weight_only_gemm_shared_memory,
    weight_only_name,
    weight_only_register_twin,
    weight_only_shared_memory,
    weight_only_tma_name,
    weight_only_tma_shared_memory,
    weight_only_warps,
    weight_only_wgmma_name,
    weight_only_wgmma_shared_memory,
    weight_only_wgmma_tile,
)
from .driver import capture_id
from .prepared import PreparedLaunch, PreparedSequence
from .tensor_maps import tensor_map_2d, tensor_map_at

GEMV_MAX_ROWS = 4
GEMV_ROWS_PER_BLOCK = 16  # int8_gemv.cu: 8 warps x 2 weight rows
GEMV_SPLIT_COLUMNS = 512  # int8_gemv.cu: a split's K range is a multiple of this
GEMV_BLOCKS_PER_SM = 8  # GEMV blocks wanted per SM before K is split
CUBLAS_MIN_ROWS = 17  # cuBLAS beats the own GEMM from here (benches/kernel-choice-h200.md)
# On sm_90 LLM.int8()'s product from INT8_WGMMA_MIN_ROWS rows (fp16 / bf16, aligned operands)
# is int8_wgmma.cu: wgmma int8 with the epilogue fused, one launch where cuBLAS takes two; beyond
# INT8_WGMMA_MAX_ROWS rows only while its 128-token tiles fit one wave (one per SM): cuBLAS's
# main loop is faster once tiles come in waves (benches/int8-h200.md: 2048 rows 884 against
# 1134 us on 8192x28672).
INT8_WGMMA_MIN_ROWS, INT8_WGMMA_MAX_ROWS = 5, 128
# Up to INT8_WGMMA_MAX_ROWS rows, int8_wgmma_plan's unsplit plans for weights of at least
# INT8_TOKENS_MIN_WEIGHT_ROWS rows run int8_wgmma_tokens.cu (the tokens as wgmma's A operand, any
# multiple of 16 weight rows per block: `int8_tokens_rows`) instead: its blocks fill the SMs where
# 128-row ones leave a third idle (4096x11008) or come in two waves (8192x28672). Measured on the
# H200 (benches/NOTES.md v38, t=6, graph-replayed, cold): 8192x28672 at 32-128 rows 67.9-73.8
# against 73.7-87.7 us, 4096x11008 at 96-128 rows 25.4-26.2 against 27.2-27.6 (a tie at 32-64);
# slower where int8_wgmma.cu splits K across a cluster (11008x4096, 4096x4096).
INT8_TOKENS_MIN_WEIGHT_ROWS = 8192
# int8_wgmma_plan's cost per token of a block's K tile, in units of streaming that K tile of its
# weight (int8 tensor cores at twice the weight-only kernel's rate, no conversion; fitted on the
# H200 with WGMMA_BLOCK_COST: within 1% of the best plan on 30 of 32 rows of that table, 5% on all).
INT8_WGMMA_TOKEN_COST = 0.001
K_TILE = 128
MIN_K_TILES_PER_SPLIT = 4
# From this many rows on sm_90, where the 128-token tiles do not fit one wave, LLM.int8()'s product
# runs int8_wgmma.cu's 256-token tile (pairs of blocks sharing the tokens' box, the epilogue
# fused) instead of cuBLAS's GEMM and the separate MODE 2 epilogue: 13-32% faster at 512-4096 rows
# on the four benchmark shapes (benches/NOTES.md v58). LLMINT8_PAIR_TILE=0 turns it off.
INT8_WGMMA_PAIR_MIN_ROWS = 256
_PAIR_TILE = os.environ.get("LLMINT8_PAIR_TILE", "1") != "0"


def pair_tile_enabled() -> bool:
    """Whether plans from INT8_WGMMA_PAIR_MIN_ROWS rows take int8_wgmma.cu's 256-token tile."""
    return _PAIR_TILE


MAX_SPLITS = 16
GATHER_ROWS_PER_BLOCK = 8  # gather_outlier_columns.cu ROWS_PER_BLOCK
# Gather blocks per SM (all resident at once): each block lists the outlier columns from the mask
# once and then copies rows until none are left (one block per 8 rows listed them 3600 times for
# 8192x28672: 17.6 us of a 145 us forward at M = 128, benches/NOTES.md v11).
GATHER_BLOCKS_PER_SM = 8
# (row, K tile) pairs per warp of the gather kernel where it writes the wgmma kernels' dense outlier
# part (Xo), and the grid's size follows.
DENSE_PAIRS_PER_WARP = 4
# "auto" arithmetic takes the weight-only kernel up to WEIGHT_ONLY_MAX_ROWS rows, and for weights
# of at most E elements up to the R rows of the first (E, R) in WEIGHT_ONLY_ROW_LIMITS: its cost
# grows with the rows (each block's tokens re-read the weight from L2), LLM.int8()'s (cuBLAS and
# the epilogue) barely does, and the crossing comes later for smaller weights
# (benches/kernel_choice.py --weight-only, weights cold in L2).
WEIGHT_ONLY_MAX_ROWS = 16
WEIGHT_ONLY_ROW_LIMITS = ((1 << 24, 96), (1 << 26, 48))
# The same on GPUs that run weight_only_wgmma.cu (sm_90), where the weight-only product stays
# ahead of LLM.int8() for more rows (benches/weight-only-h200.md, v13).
WGMMA_WEIGHT_ONLY_MAX_ROWS = 64
WGMMA_WEIGHT_ONLY_ROW_LIMITS = ((1 << 24, 256), (1 << 26, 128))
# There, a weight whose output rows make int8_wgmma.cu blocks (128 rows each) for at least this
# share of the SMs, K unsplit, takes LLM.int8() from fewer rows: up to the R rows of the first
# (E, R) in WGMMA_INT8_FILLS_ROW_LIMITS with at least its E elements, WGMMA_INT8_FILLS_MAX_ROWS for
# larger ones (4096x11008, 86 blocks on 132 SMs: 27.1 against 31.3 us at 96 rows; 11008x4096, 32
# blocks and split K, stays weight-only to 128 rows; benches/NOTES.md v30). Such weights have
# 8192 rows or more, so int8_wgmma_tokens.cu serves them, whose cost barely grows with the rows
# up to 64: t=6 against weight-only at 24 / 32 / 40 / 64 rows 24.6 / 23.9 / 23.5 / 23.4 against
# 22.1 / 22.1 / 23.7 / 24.0 us on 4096x11008, 67.6 / 67.6 / 68.6 / 71.7 against 70.4 / 70.6 /
# 75.1 / 77.9 on 8192x28672, a tie at 16 rows there (benches/NOTES.md v38).
WGMMA_INT8_FILL_SHARE = 0.5
WGMMA_INT8_FILLS_ROW_LIMITS = ((1 << 26, 32),)
WGMMA_INT8_FILLS_MAX_ROWS = 16
# Where "auto" takes LLM.int8() on the wgmma kernels, a call whose input holds many outlier
# columns is handed over to the weight-only product on the GPU (hopper.cuh: both kernels launched,
# the gather kernel's count picks one): from more than HAND_OVER_DENSE_ABOVE columns on plans with
# the dense outlier part (which then multiplies nearly every K tile twice: 4096x11008 at 128 rows
# 55.8 us at C = 512 against 23.0 at C = 0, the weight-only product ~32), from more than
# HAND_OVER_LISTED_ABOVE on the others (their listed columns cost ~0.25 us each: 8192x28672 at 128
# rows 211 us at C = 512, and cross the weight-only product near 100 columns at 32-64 rows, near
# 200 at 128; benches/NOTES.md v51), by the plan's token tile. LLMINT8_HAND_OVER=0 turns it off.
HAND_OVER_DENSE_ABOVE = OUTLIER_CHUNK
HAND_OVER_LISTED_ABOVE = {32: 2 * OUTLIER_CHUNK, 64: 2 * OUTLIER_CHUNK, 128: 3 * OUTLIER_CHUNK}
_HAND_OVER = os.environ.get("LLMINT8_HAND_OVER", "1") != "0"


def pair_hand_over_above(m: int, k: int) -> int:
    """The hand-over limit of int8_wgmma.cu's 256-token tile for m rows of K = k: its listed
    columns cost about 4 us per chunk of 64 and tile, the weight-only product at these rows
    about 1.7x fp16 (benches/NOTES.md v58's sweep: at 512 rows the crossover between 64 and 512
    columns on K = 4096, past 512 on K = 8192; at 2048 rows past 512 and before 1024 on K = 4096,
    before 2048 on K = 8192), so K * m / 8192 in whole chunks, at least HAND_OVER_LISTED_ABOVE's
    128-token limit, at most K / 8."""
    limit = min(k * m // 8192, k // 8) // OUTLIER_CHUNK * OUTLIER_CHUNK
    return max(HAND_OVER_LISTED_ABOVE[128], limit)


# From this many rows (and aligned operands) the weight-only product is weight_only_gemm.cu: a
# block multiplies up to 128 tokens by each weight tile it stages, where weight_only_linear.cu
# re-reads the weight per 16 tokens. Below it the per-16-token kernel measured faster on most
# shapes (benches/kernel_choice.py --weight-only, H200: its mma.sync product issues more
# instructions per weight than the weight stream allows at few tokens).
WEIGHT_ONLY_GEMM_MIN_ROWS = 65
MIN_K_TILES_PER_GEMM_SPLIT = 4
# weight_only_gemm.cu's token tile by rows: 32 tokens up to 32 rows, 64 up to 128 (two blocks of
# 64 measured faster than one of 128: more blocks, fewer registers), 128 beyond.
WEIGHT_ONLY_GEMM_TOKEN_TILES = ((32, WEIGHT_ONLY_GEMM_TILES[0]), (128, WEIGHT_ONLY_GEMM_TILES[1]))
# The cost of splitting K in weight_only_gemm_plan, in units of one wave of unsplit blocks: the
# cluster's exchange of partial tiles and a shorter pipeline per block (fitted on the H200,
# where clusters of 4 measured slower than of 2 at most shapes).
GEMM_SPLIT_COST = 0.2
# On sm_90 the weight-only product from WGMMA_MIN_ROWS rows (aligned operands; from
# WGMMA_MIN_ROWS_WIDE for weights of WGMMA_WIDE_ROWS rows or more, whose blocks fill the GPU) is
# weight_only_wgmma.cu: wgmma with the converted weight as the register operand, K tiles streamed
# through a ring of stages by TMA (benches/weight-only-h200.md, v13: at 32 rows the per-16-token
# kernel stays ahead on 4096-row weights).
WGMMA_MIN_ROWS, WGMMA_MIN_ROWS_WIDE, WGMMA_WIDE_ROWS = 33, 17, 8192
# On sm_90, 9-16 rows by weights of TMA_MIN_WEIGHT_ROWS rows or more: weight_only_tma.cu, the
# register tile with the activations staged by TMA (32 weight rows per block, 64 from
# TMA_WIDE_WEIGHT_ROWS). benches/NOTES.md v33: 4096x11008 at 16 rows 18.3 -> 16.6 us, 8192x28672
# 70.8 -> 68.5; slower on 4096-row weights (10.2 against the ring tile's 8.2 on 4096x4096, 22.0
# against 18.0 on 11008x4096), whose one-wave ring tiles stay. And 17-32 rows by weights of fewer
# rows with a long K (TMA_SPLIT_MIN_K): its 32-token tile with K split across a cluster of two
# (v34: 11008x4096 at 32 rows 24.7 -> 20.5 us; no gain on 4096x4096, where 4096-column halves are
# too short a stream per warp, nor on the wide weights, where wgmma serves from 17 rows).
TMA_MIN_ROWS, TMA_MAX_ROWS, TMA_SPLIT_MAX_ROWS = 9, 16, 32
TMA_MIN_WEIGHT_ROWS, TMA_WIDE_WEIGHT_ROWS, TMA_SPLIT_MIN_K = 8192, 16384, 8192
# weight_only_wgmma_plan's costs, in units of one block's K tile (streaming its weight tile):
# plus this much per token of the block (wgmma and conversion); per block (pipeline fill and
# epilogue) and per block of a split K (the cluster's exchange of partial tiles); per launch with
# K split. Clusters of 4 blocks of 193 KB of shared memory occupy only this share of the SMs at
# once (whole clusters per GPC). Fitted on the H200 (benches/kernel_choice.py --weight-only).
WGMMA_TOKEN_COST, WGMMA_BLOCK_COST, WGMMA_SPLIT_BLOCK_COST = 0.0074, 8.0, 6.0
WGMMA_SPLIT_COSTS = {1: 0.0, 2: 2.0, 4: 4.0}
WGMMA_CLUSTER_FILL = {1: 1.0, 2: 1.0, 4: 0.9}
# Stream-K (one block per SM, each SM the same share of the K tiles): its partial tiles' exchange
# through memory and its outputs written from registers, in the same units.
WGMMA_STREAM_K_COST = 20.0
# Stream-K over wide tiles (256 weight rows, two K tiles of 128 rows each per unit): per token of
# a unit, against WGMMA_TOKEN_COST per token of a 128-row K tile (the activations' K tile is read
# once for both halves).
WGMMA_WIDE_TOKEN_COST, WGMMA_WIDE_COST = 0.0074, 8.0
REGISTERS_PER_SM, THREADS_PER_SM, REGISTER_GRANULE = 65536, 2048, 8
# An activation byte a weight_only_linear.cu block re-reads against a weight byte it streams, by
# token tiles: up to 8 tokens' rows stay in L1, 16 tokens' come from L2 (fitted on the H200,
# benches/NOTES.md v24).
ACTIVATION_REREAD_COST = {1: 0.05, 2: 0.25}
CACHED_WORKSPACE_BYTES = 256 << 20  # per thread and stream; larger calls allocate their own

MODE_PLAIN, MODE_DETECT, MODE_STATIC = 0, 1, 2
# quantize_rows.cu's bit that holds the next kernel back until it is complete: every call whose
# int8 rows may be a weight (int8_wgmma.cu reads its weight before it waits for the kernel before).
MODE_HOLD_DEPENDENTS = 4
BIAS_KINDS = {torch.float16: 1, torch.bfloat16: 2, torch.float32: 3}  # common.cuh load_bias
_STATIC_MASK_ATTRIBUTE = "_llmint8_static_mask"


class Plan(NamedTuple):
    """How the int8 product of one call runs."""

    kernel: str  # "gemv", "gemm", "cublas" or "wgmma" (int8_wgmma.cu)
    tile_rows: int = 128  # GEMM row tile (BM), GEMV row group (MAXM) or wgmma token tile
    splits: int = 1  # blocks along K
    split_size: int = 0  # K tiles (GEMM) or columns (GEMV) per split
    # "wgmma" with weight rows per block: int8_wgmma_tokens.cu (the tokens as wgmma's A operand)
    weight_rows: int = 0


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _tile_rows(m: int, tokens: int) -> int:
    """The rows of the wgmma kernels' tensor maps of the int8 activations and of Xo: m rounded up
    to whole token tiles of `tokens`, so that no box reaches past its map's rows (a box part past
    them cost int8_wgmma_tokens.cu 1.8 us at 32 rows on 4096x11008, and its dense outlier part's
    Xo copies 7 more: benches/NOTES.md v47). The workspace has room for them; the rows past m
    hold bytes of no meaning, and no kernel writes their sums."""
    return _ceil(m, tokens) * tokens


def plan(
    index: int, m: int, n: int, k: int, *, cublas_ok: bool, raw: bool = False,
    wgmma_ok: bool = False,
) -> Plan:  # fmt: skip
    """The kernel for an [m, k] x [n, k]^T product on GPU `index` (see the module docstring;
    benches/kernel_choice.py measures the alternatives). `raw`: int32 output, no epilogue.
    `wgmma_ok`: the call may run int8_wgmma.cu (sm_90, fp16 / bf16, aligned operands)."""
    sms = sm_count(index)
    if m <= GEMV_MAX_ROWS or check_device(index) < MMA_CAPABILITY:
        group = 16 if raw else next((r for r in GEMV_ROW_GROUPS if r >= m), GEMV_ROW_GROUPS[-1])
        blocks = _ceil(n, GEMV_ROWS_PER_BLOCK) * _ceil(m, group)
        splits = max(1, min(MAX_SPLITS, GEMV_BLOCKS_PER_SM * sms // blocks))
        size = _ceil(_ceil(k, splits), GEMV_SPLIT_COLUMNS) * GEMV_SPLIT_COLUMNS
        return Plan("gemv", group, _ceil(k, size), size)
    one_wave = _ceil(m, INT8_WGMMA_TOKEN_TILES[-1][0]) * _ceil(n, WGMMA_WEIGHT_ROWS) <= sms
    few_rows = m <= INT8_WGMMA_MAX_ROWS or one_wave or not cublas_ok
    if wgmma_ok and not raw and m >= INT8_WGMMA_MIN_ROWS and few_rows:
        tokens, splits = int8_wgmma_plan(index, m, n, k)
        if splits == 1 and n >= INT8_TOKENS_MIN_WEIGHT_ROWS and m <= INT8_WGMMA_MAX_ROWS:
            tokens = 64 if m <= 64 else 128
            return Plan("wgmma", tokens, 1, 0, int8_tokens_rows(index, m, n, tokens))
        return Plan("wgmma", tokens, splits)
    if wgmma_ok and not raw and m >= INT8_WGMMA_PAIR_MIN_ROWS and pair_tile_enabled():
        return Plan("wgmma", INT8_WGMMA_PAIR_TILE[0], 1)
    if cublas_ok and m >= CUBLAS_MIN_ROWS:
        return Plan("cublas", 32 if m <= 32 else 64)  # the epilogue's row tile (MODE 2)
    bm = 32 if m <= 32 else 64 if m <= 64 else 128
    k_tiles = _ceil(k, K_TILE)
    tiles = _ceil(m, bm) * _ceil(n, GEMM_TILE_COLS)
    # Split K only as far as one block per SM: measured faster than filling every resident slot
    # (the partial tiles' round trip through L2 costs more than the extra occupancy gains).
    splits = max(1, min(MAX_SPLITS, k_tiles // MIN_K_TILES_PER_SPLIT, sms // tiles))
    size = _ceil(k_tiles, splits)
    return Plan("gemm", bm, _ceil(k_tiles, size), size)


class _Workspace(NamedTuple):
    """Byte offsets inside the one scratch allocation of a call: the int8 activations, their row
    scales, a zero-initialised region (outlier mask words, split-K tile counters), the split-K
    partial sums, cuBLAS's int32 product, and for the GEMM plans with outlier columns their count
    and the gathered columns of the activations (xc) and of the weight (wc), `ldc` apart; for
    int8_wgmma.cu, which reads the weight's outlier columns in place, wc holds their list, xc
    also its dense outlier part's Xo ([m, ldc]), and `hot` that part's bits of hot K tiles. For
    the wgmma kernels the int8 activations and Xo have room for `_tile_rows` rows."""

    absmax: int
    mask: int  # start of the zeroed region
    zeroed_bytes: int
    mask_bytes: int  # its first bytes: the mask words (the rest: counters)
    counters: int
    partials: int
    product: int
    count: int
    xc: int
    wc: int
    ldc: int
    hot: int
    size: int

    q = 0

    @staticmethod
    def of(m: int, n: int, k: int, plan_: Plan, detect: bool, gather: bool, itemsize: int):
        rows = _tile_rows(m, plan_.tile_rows) if plan_.kernel == "wgmma" else m
        absmax = _ceil(rows * k, 256) * 256
        mask = _ceil(absmax + 4 * m, 256) * 256
        mask_bytes = 4 * _ceil(k, 32) if detect else 0
        counters = mask + mask_bytes
        tiles = partial_bytes = 0
        if plan_.splits > 1 and plan_.kernel == "gemm":
            tiles = _ceil(m, plan_.tile_rows) * _ceil(n, GEMM_TILE_COLS)
            # int32 partial tiles, then float ones of the outlier product
            partial_bytes = 2 * 4 * plan_.splits * tiles * plan_.tile_rows * GEMM_TILE_COLS
        elif plan_.splits > 1 and plan_.kernel == "gemv":  # an (int, float) pair per row pair
            tiles = _ceil(m, plan_.tile_rows) * _ceil(n, GEMV_ROWS_PER_BLOCK)
            partial_bytes = 8 * plan_.splits * tiles * GEMV_ROWS_PER_BLOCK * plan_.tile_rows
        partials = _ceil(counters + 4 * tiles, 256) * 256
        product = _ceil(partials + partial_bytes, 256) * 256
        count = product + (4 * m * n if plan_.kernel == "cublas" else 0)
        # Up to every column an outlier: room for K of them (whole chunks).
        ldc = _ceil(k, OUTLIER_CHUNK) * OUTLIER_CHUNK if gather else 0
        xc = _ceil(count + 4, 256) * 256
        wc = _ceil(xc + itemsize * rows * ldc, 256) * 256
        hot = wc + (4 if plan_.kernel == "wgmma" else n) * ldc
        size = hot + (4 * _ceil(_ceil(k, K_TILE), 32) if plan_.kernel == "wgmma" and gather else 0)
        return _Workspace(absmax, mask, mask_bytes + 4 * tiles, mask_bytes, counters, partials,
                          product, count, xc, wc, ldc, hot, size)  # fmt: skip


_layouts: dict[tuple, tuple[Plan, _Workspace]] = {}
_local = threading.local()


def _layout(index, m, n, k, cublas_ok, detect, outliers, raw, itemsize=2, wgmma_ok=False):
    """The plan and workspace layout of a call shape (computed once per shape). `outliers`: the
    call has an outlier mask (detected or static)."""
    key = (index, m, n, k, cublas_ok, detect, outliers, raw, itemsize, wgmma_ok)
    found = _layouts.get(key)
    if found is None:
        plan_ = plan(index, m, n, k, cublas_ok=cublas_ok, raw=raw, wgmma_ok=wgmma_ok)
        gather = outliers and plan_.kernel != "gemv"
        workspace = _Workspace.of(m, n, k, plan_, detect, gather, itemsize)
        found = _layouts[key] = (plan_, workspace)
    return found


def _workspaces_transient_now() -> bool:
    """Whether a call now takes a workspace of its own instead of the cached one (`_scratch`):
    while a CUDA graph is captured or inside `transient_workspaces()`."""
    return torch.cuda.is_current_stream_capturing() or workspaces_are_transient()


def _scratch(size: int, device: torch.device, stream: int) -> Tensor:
    """Scratch memory for one call. Small workspaces are reused, one per thread and stream: calls
    on one stream run in order, so a call never overwrites what an earlier one still reads.
    While a CUDA graph is captured the graph's own pool serves (replays must not share), and
    inside `transient_workspaces()` (torch.compile'd callers) every call allocates its own."""
    if size > CACHED_WORKSPACE_BYTES or _workspaces_transient_now():
        return torch.empty(size, dtype=torch.uint8, device=device)
    cache = getattr(_local, "workspaces", None)
    if cache is None:
        cache = _local.workspaces = {}
    key = (device.index, stream)
    scratch = cache.get(key)
    if scratch is None or scratch.numel() < size:
        scratch = cache[key] = torch.empty(
            max(size, 1 << 20), dtype=torch.uint8, device=device
        )  # fmt: skip
    return scratch


def _stream_mask(device: torch.device, stream: int, words: int) -> Optional[Tensor]:
    """The outlier mask of LLM.int8() calls on `stream` that gather their outlier columns: `words`
    mask words and the gather kernel's arrival counter after them, zeroed once when allocated and
    left zeroed by the kernels (int8_wgmma.cu once the gather, the mask's last reader, is
    complete; else the gather's last block), so that no call zeroes it before quantizing (a
    memset, which also breaks the chain of dependent launches: 1-4 us per forward on the H200,
    benches/NOTES.md v28). One per thread and stream (calls on a stream run in order); while a
    graph is captured, one per capture and stream, zeroed inside the graph before its first call
    (replays of other graphs must not share it). None (the call zeroes a mask in its workspace)
    inside `transient_workspaces()`, whose calls keep no memory, and where the driver does not
    tell the capture apart."""
    if workspaces_are_transient():
        return None
    if torch.cuda.is_current_stream_capturing():
        capture = capture_id(stream)
        if capture is None:
            return None
        found = getattr(_local, "capture_masks", None)
        if found is None or found[0] != capture:
            found = _local.capture_masks = (capture, {})  # earlier captures' masks let go
        masks = found[1]
    else:
        masks = _local.__dict__.setdefault("stream_masks", {})
    key = (device.index, stream)
    mask = masks.get(key)
    if mask is None or mask.numel() <= words:
        mask = masks[key] = torch.zeros(max(words + 1, 512), dtype=torch.int32, device=device)
    return mask


def _zero(pointer: int, size: int, stream: int) -> None:
    if size:
        cupy_module().cuda.runtime.memsetAsync(pointer, 0, size, stream)


def _ptr(t: Optional[Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


def _static_mask(outlier_cols: Tensor, k: int) -> Tensor:
    """The outlier columns as a device bitmask (uint32 words as int32), cached on the column
    tensor itself (static columns belong to a layer and rarely change)."""
    cached = getattr(outlier_cols, _STATIC_MASK_ATTRIBUTE, None)
    if cached is not None and cached[0] == (outlier_cols._version, k):
        return cached[1]
    cols = outlier_cols.to(dtype=torch.int64)
    words = torch.zeros(_ceil(k, 32), dtype=torch.int64, device=cols.device)
    words.index_add_(0, cols // 32, torch.ones_like(cols) << (cols % 32))
    mask = words.to(torch.int32)  # bits 31 wrap to the int32 sign bit, as uint32 expects
    setattr(outlier_cols, _STATIC_MASK_ATTRIBUTE, ((outlier_cols._version, k), mask))
    return mask


def _quantize_vectorized(x: Tensor, q_ptr: int) -> bool:
    """Whether quantize_rows.cu loads x [m, k] and stores its int8 rows at `q_ptr` 16 bytes at a
    time."""
    return x.shape[1] % 16 == 0 and x.data_ptr() % 16 == 0 and q_ptr % 16 == 0


def _quantize_launch(x: Tensor, q_ptr: int, absmax_ptr: int, mask_ptr: int, mode: int, threshold):
    """quantize_rows.cu for x [m, k] (m > 0) as a `_Launch` whose input parameter is x's
    address (the vector kernel where x, k and the int8 rows allow 16-byte loads)."""
    m, k = x.shape
    vec = _quantize_vectorized(x, q_ptr)
    index = x.device.index
    threads = quantize_threads(m, k, 16 // x.element_size() if vec else 1, sm_count(index))
    name = quantize_name(C_TYPES[x.dtype], vec, threads)
    quantize = kernel(index, "quantize_rows.cu", name)
    args = (x.data_ptr(), q_ptr, absmax_ptr, mask_ptr, m, k, k, threshold, mode)
    return _Launch(quantize, (m, 1, 1), 0, args, 0, None, False)


def quantize_rows(
    x: Tensor, threshold: float, outlier_cols: Optional[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """As the CPU backend. This entry point returns the outlier columns as an index tensor, which
    needs one host sync; the forward path (`int8_linear`) keeps them on the device."""
    x = x.contiguous()
    m, k = x.shape
    q = torch.empty((m, k), dtype=torch.int8, device=x.device)
    absmax = torch.empty(m, dtype=torch.float32, device=x.device)
    mask: Optional[Tensor] = None
    mode = MODE_PLAIN
    if outlier_cols is not None:
        mask, mode = _static_mask(outlier_cols, k), MODE_STATIC
    elif threshold > 0:
        mask, mode = torch.zeros(_ceil(k, 32), dtype=torch.int32, device=x.device), MODE_DETECT
    if m:
        hold = mode | MODE_HOLD_DEPENDENTS
        _run([_quantize_launch(x, q.data_ptr(), absmax.data_ptr(), _ptr(mask), hold, threshold)])
    if mask is None:
        return q, absmax, torch.empty(0, dtype=torch.long, device=x.device)
    bits = (mask.to(torch.int64) & 0xFFFFFFFF)[:, None] >> torch.arange(32, device=x.device)
    columns = (bits & 1).flatten()[:k].nonzero().flatten()
    q[:, columns] = 0
    return q, absmax, columns


class _Operands(NamedTuple):
    """Pointers and strides of one int8 product and its epilogue (0 for what a call lacks): the
    GEMV reads the outlier columns through `x` and `mask`, the GEMM gathered, through `xc`, `wc`
    and `count`; int8_wgmma.cu zeroes the `spent_words` words at `spent_mask` (a `_stream_mask`
    that the gather kernel has read for the last time)."""

    a: int
    lda: int
    b: int
    ldb: int
    absmax: int = 0
    scb: int = 0
    bias: int = 0
    bias_kind: int = 0
    x: int = 0
    ldx: int = 0
    mask: int = 0
    out: int = 0
    out_i32: int = 0
    ldo: int = 0
    xc: int = 0
    wc: int = 0
    ldc: int = 0
    count: int = 0
    spent_mask: int = 0
    spent_words: int = 0
    hot: int = 0  # the wgmma kernels' dense outlier part: its bits of hot K tiles (0: none)
    weight_only_above: int = -1  # the wgmma kernels' hand-over (`_hand_over_above`; -1: none)


class _Launch(NamedTuple):
    """One kernel launch of a call, with the index of the parameter that holds the input (its
    address, or with `input_is_map` its tensor map; None where the kernel does not read the
    input itself) and of the output's address (None: no output of the call), the stream whose
    workspace it uses (None: no workspace or not recorded) and whether it launches as a
    programmatic dependent (`Kernel.launch_packed`)."""

    kernel: Kernel
    grid: tuple[int, int, int]
    shared_mem: int
    args: tuple
    input_param: Optional[int]
    output_param: Optional[int]
    input_is_map: bool
    stream: Optional[int] = None
    dependent: bool = True


class _CublasProduct(NamedTuple):
    """cuBLAS's int32 product of a call into the workspace (`cublas.int8_gemm`'s arguments), a
    step of the call as a `_Launch` is (it reads neither the input nor the output)."""

    m: int
    n: int
    k: int
    a: int
    lda: int
    b: int
    ldb: int
    c: int

    def __call__(self) -> None:
        cublas.int8_gemm(*self)


def _run(steps: list) -> None:
    """Launches a call's steps now, in order."""
    for step in steps:
        if isinstance(step, _CublasProduct):
            step()
        else:
            step.kernel.launch(step.grid, step.shared_mem, *step.args, dependent=step.dependent)


def _product_steps(
    index, m, n, k, ops: _Operands, plan_: Plan, ws_base, ws, aligned, dtype, raw: bool
) -> list:  # fmt: skip
    """The planned kernel(s) as steps (`_Launch`: its output address parameter marked, and the
    input's where the kernel reads the activations themselves; `_CublasProduct`): MODE 1, or
    MODE 0 (raw int32 into `ops.out_i32`) with `raw`."""
    mode = 0 if raw else 1
    t = C_TYPES[dtype]
    scales = (ops.absmax, ops.scb, ops.bias, ops.bias_kind)
    split = (ws_base + ws.partials, ws_base + ws.counters, plan_.split_size)
    if plan_.kernel == "gemv":
        rows = plan_.tile_rows
        grid = (_ceil(n, GEMV_ROWS_PER_BLOCK), _ceil(m, rows), plan_.splits)
        args = (
            ops.a, ops.b, m, n, k, ops.lda, ops.ldb, *scales, ops.x, ops.ldx, ops.mask, ops.out,
            ops.out_i32, ops.ldo, *split,
        )  # fmt: skip
        gemv = kernel(index, "int8_gemv.cu", gemv_name(t, rows, aligned, mode))
        return [_Launch(gemv, grid, 0, args, 11 if mode else None, 14 if mode else 15, False)]
    if plan_.kernel == "wgmma" and plan_.weight_rows:
        return [_int8_tokens_launch(index, m, n, k, ops, plan_, t)]
    if plan_.kernel == "wgmma":
        return [_int8_wgmma_launch(index, m, n, k, ops, plan_.tile_rows, plan_.splits, t)]
    steps: list = []
    bm, splits, out_i32, ldo = plan_.tile_rows, plan_.splits, ops.out_i32, ops.ldo
    if plan_.kernel == "cublas":
        out_i32 = ws_base + ws.product
        steps.append(_CublasProduct(m, n, k, ops.a, ops.lda, ops.b, ops.ldb, out_i32))
        mode, splits, ldo = 2, 1, n
    grid = (_ceil(m, bm), _ceil(n, GEMM_TILE_COLS), splits)
    args = (
        ops.a, ops.b, m, n, k, ops.lda, ops.ldb, *scales, ops.xc, ops.wc, ops.ldc, ops.count,
        ops.out, out_i32, ldo, *split,
    )  # fmt: skip
    gemm = kernel(index, "int8_gemm.cu", gemm_name(t, aligned, mode, bm))
    shared = gemm_shared_memory(bm, mode)
    steps.append(_Launch(gemm, grid, shared, args, None, 15 if mode else 16, False))
    return steps


# int8_wgmma.cu streams its weight's first stages before it waits for the kernel before it, where
# it launches as a programmatic dependent with tiles whose blocks fit beside the quantize kernel's
# (benches/NOTES.md v36); LLMINT8_EARLY_WEIGHTS=0 turns that off.
_EARLY_WEIGHTS = os.environ.get("LLMINT8_EARLY_WEIGHTS", "1") != "0"
EARLY_WEIGHT_MAX_TOKENS = 64


def _early_weights(tokens: int, ops: _Operands) -> int:
    """int8_wgmma.cu's `early_weights` for a launch of `tokens`-token tiles made now: only as a
    dependent (captured, dependent launch on): in plain stream order the kernel before has
    finished, and the first X box would wait behind the weight's (1 µs per forward). Never
    with the hand-over to the weight-only kernel (`ops.weight_only_above`), which the kernel
    decides before it copies anything."""
    early = _EARLY_WEIGHTS and tokens <= EARLY_WEIGHT_MAX_TOKENS and ops.weight_only_above < 0
    return int(early and launches_dependent())


def _int8_wgmma_launch(index, m, n, k, ops: _Operands, tokens: int, splits: int, dtype_name):
    """int8_wgmma.cu's plan (tokens, splits) for `ops` (MODE 1 operands; `ops.wc`: the list of
    outlier columns) as a `_Launch`. The 256-token tile's blocks come in pairs along grid y that
    each copy half the tokens' box (a box of 128 rows) into both."""
    padded = _tile_rows(m, tokens)
    pair = tokens == INT8_WGMMA_PAIR_TILE[0]
    box_rows = tokens // 2 if pair else tokens
    x_map = tensor_map_at(ops.a, torch.int8, padded, k, ops.lda, WGMMA_K_TILE, box_rows, 128)
    rows = WGMMA_WEIGHT_ROWS
    w_map = tensor_map_at(ops.b, torch.int8, n, k, ops.ldb, WGMMA_K_TILE, rows, 128)
    stages = INT8_WGMMA_PAIR_TILE[1] if pair else dict(INT8_WGMMA_TOKEN_TILES)[tokens]
    shared = int8_wgmma_shared_memory(tokens, stages)
    if pair and ops.xc:  # its first outlier chunk's Xc, copied as the tokens' boxes are
        dtype = next(t for t, name in C_TYPES.items() if name == dtype_name)
        xo_map = tensor_map_at(ops.xc, dtype, padded, ops.ldc, ops.ldc * 2, 64, box_rows, 128)
    else:
        xo_map = _xo_map(ops, m, k, tokens, dtype_name, x_map)
    args = (
        x_map, w_map, xo_map, ops.absmax, ops.scb, ops.bias, ops.bias_kind, ops.xc, ops.ldc, ops.b,
        ops.ldb, ops.wc, ops.count, m, n, k, ops.out, ops.ldo, ops.spent_mask, ops.spent_words,
        _early_weights(tokens, ops), ops.hot, ops.weight_only_above,
    )  # fmt: skip
    wgmma = kernel(index, "int8_wgmma.cu", int8_wgmma_name(dtype_name, tokens, splits))
    weight_tiles = _ceil(_ceil(n, rows), 2) * 2 if pair else _ceil(n, rows)
    return _Launch(wgmma, (_ceil(m, tokens), weight_tiles, splits), shared, args, None, 16, False)


def _has_dense_part(plan_: Plan) -> bool:
    """Whether the wgmma plan's kernel has the dense outlier part (int8_wgmma.cu's and
    int8_wgmma_tokens.cu's tiles whose sums fit the registers with it)."""
    if plan_.weight_rows:
        return (plan_.weight_rows, plan_.tile_rows // 64) in INT8_TOKENS_DENSE_TILES
    return plan_.tile_rows in INT8_WGMMA_DENSE_TILES


def _xo_map(ops: _Operands, m: int, k: int, tokens: int, dtype_name: str, x_map):
    """The tensor map of the dense outlier part's Xo in `ops.xc` (boxes of 64 columns by `tokens`
    rows, `_tile_rows` rows) where `ops.hot` is given (`_int8_call`: only for plans
    `_has_dense_part`), else `x_map` (then not read)."""
    if not ops.hot:
        return x_map
    dtype = next(t for t, name in C_TYPES.items() if name == dtype_name)
    return tensor_map_at(ops.xc, dtype, _tile_rows(m, tokens), k, ops.ldc * 2, 64, tokens, 128)


def _int8_tokens_launch(index, m, n, k, ops: _Operands, plan_: Plan, dtype_name):
    """int8_wgmma_tokens.cu's plan (`plan_.tile_rows` tokens, `plan_.weight_rows` weight rows,
    `plan_.splits`) for `ops` as `_int8_wgmma_launch`'s."""
    tokens, rows, splits = plan_.tile_rows, plan_.weight_rows, plan_.splits
    stages = {(r, c): s for r, c, s in INT8_TOKENS_TILES}.get((rows, tokens // 64))
    if stages is None or tokens % 64 or splits not in WGMMA_SPLITS:
        raise ValueError(
            f"int8_wgmma_tokens.cu has no plan of {tokens} tokens, {rows} weight rows and "
            f"{splits} splits: {INT8_TOKENS_TILES}"
        )
    padded = _tile_rows(m, tokens)
    x_map = tensor_map_at(ops.a, torch.int8, padded, k, ops.lda, WGMMA_K_TILE, tokens, 128)
    w_map = tensor_map_at(ops.b, torch.int8, n, k, ops.ldb, WGMMA_K_TILE, rows, 128)
    shared = int8_tokens_shared_memory(rows, tokens // 64, stages)
    xo_map = _xo_map(ops, m, k, tokens, dtype_name, x_map)
    args = (
        x_map, w_map, xo_map, ops.absmax, ops.scb, ops.bias, ops.bias_kind, ops.xc, ops.ldc, ops.b,
        ops.ldb, ops.wc, ops.count, m, n, k, ops.out, ops.ldo, ops.spent_mask, ops.spent_words,
        _early_weights(tokens, ops), ops.hot, ops.weight_only_above,
    )  # fmt: skip
    name = int8_tokens_name(dtype_name, rows, tokens // 64, splits)
    product = kernel(index, "int8_wgmma_tokens.cu", name)
    grid = (_ceil(m, tokens), _ceil(n, rows), splits)
    return _Launch(product, grid, shared, args, None, 16, False)


def _gather_launch(
    x: Tensor, CB: Tensor, q: int, mask: int, base: int, ws: _Workspace, listed: bool = False,
    clear: bool = False, dense: bool = False, hand_over_above: int = -1,
) -> _Launch:  # fmt: skip
    """gather_outlier_columns.cu as a `_Launch` whose input parameter is x's address: the
    outlier columns of x and CB into the workspace's xc and wc (and their count), and zeroed in
    the int8 activations; with `listed` (int8_wgmma.cu) CB's are left in place and wc receives
    the list of the columns instead; with `clear` the mask is a `_stream_mask`, left zeroed; with
    `dense` (the wgmma kernels' dense outlier part) more than a chunk of columns go as Xo into xc
    and the bits of hot K tiles into the workspace's `hot` instead; with `hand_over_above` >= 0
    more columns than that are left in place (the call's weight-only product takes them)."""
    m, k = x.shape
    n = 0 if listed else CB.shape[0]
    gather = kernel(
        x.device.index, "gather_outlier_columns.cu", f"gather_outlier_columns<{C_TYPES[x.dtype]}>"
    )
    resident = GATHER_BLOCKS_PER_SM * sm_count(x.device.index)
    rows = m + n
    if dense:  # a warp per (row, K tile) pair, about four pairs each
        rows = max(rows, _ceil(m * _ceil(k, K_TILE), DENSE_PAIRS_PER_WARP))
    blocks = min(_ceil(rows, GATHER_ROWS_PER_BLOCK), resident)
    args = (
        mask, x.data_ptr(), x.stride(0), q, k, CB.data_ptr(), CB.stride(0), base + ws.xc,
        0 if listed else base + ws.wc, ws.ldc, base + ws.count, m, n, k,
        base + ws.wc if listed else 0, int(clear), base + ws.hot if dense else 0,
        hand_over_above,
    )  # fmt: skip
    return _Launch(gather, (blocks, 1, 1), 0, args, 1, None, False)


def _aligned(k: int, *tensors: Tensor) -> bool:
    return k % 16 == 0 and all(t.data_ptr() % 16 == 0 and t.stride(0) % 16 == 0 for t in tensors)


def int8_matmul(a: Tensor, b: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """Exact int32 ``a @ b.T`` (no epilogue), into `out` when given (tests poison it)."""
    a, b = a.contiguous(), b.contiguous()
    m, k = a.shape
    n = b.shape[0]
    if out is None:
        out = torch.empty((m, n), dtype=torch.int32, device=a.device)
    if m == 0 or n == 0:
        return out
    if k == 0:
        return out.zero_()
    index = a.device.index
    stream = current_stream(index)
    plan_, ws = _layout(index, m, n, k, False, False, False, True)
    scratch = _scratch(ws.size, a.device, stream)  # held until the launches are enqueued
    base = scratch.data_ptr()
    _zero(base + ws.mask, ws.zeroed_bytes, stream)
    ops = _Operands(a.data_ptr(), a.stride(0), b.data_ptr(), b.stride(0), ldx=k,
                    out_i32=out.data_ptr(), ldo=out.stride(0))  # fmt: skip
    aligned = _aligned(k, a, b)
    _run(_product_steps(index, m, n, k, ops, plan_, base, ws, aligned, torch.float16, raw=True))
    return out


def _output(x: Tensor, n: int, bias: Optional[Tensor], out: Optional[Tensor]):
    """The [M, N] output of a linear call (`out` or a new tensor) and whether it is complete
    already: nothing to compute (M or N zero), or K zero (the bias alone)."""
    m, k = x.shape
    if out is None:
        out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return out, True
    if k == 0:
        return (out.zero_() if bias is None else out.copy_(bias.expand(m, n))), True
    return out, False


class _Int8Call(NamedTuple):
    """One LLM.int8() call's launches: the workspace they share (held until they are enqueued,
    or for as long as they are prepared), the region of it to zero before them, the steps in
    order, and whether the quantize step loads the input 16 bytes at a time (its address must
    then be 16-byte aligned)."""

    scratch: Tensor
    zero_at: int
    zero_bytes: int
    steps: list
    vector_input: bool
    stream_mask: Optional[Tensor]  # `_stream_mask`, where the call's mask is one


def _int8_call(
    x: Tensor, CB: Tensor, scb: Tensor, bias: Optional[Tensor], threshold: float,
    outlier_cols: Optional[Tensor], out_ptr: int, ldo: int, stream: int, auto: bool = False,
) -> _Int8Call:  # fmt: skip
    """The launches of `int8_linear` for x [m, k] (m, n, k > 0), CB, scb and bias contiguous,
    writing rows of `ldo` elements at `out_ptr`: quantize, gather (with outlier columns) and the
    product, on the workspace of this thread and `stream`; with `auto` and a plan that can
    (`_hand_over_above`), also the weight-only product that takes calls with many outlier
    columns over."""
    m, k = x.shape
    n = CB.shape[0]
    index = x.device.index
    aligned = _aligned(k, CB)  # the workspace's int8 rows are 256-byte aligned with stride k
    cublas_ok = aligned and n % 4 == 0 and m >= CUBLAS_MIN_ROWS and cublas.available()
    wgmma_ok = aligned and x.dtype != torch.float32 and m > GEMV_MAX_ROWS and uses_wgmma(index)
    detect = outlier_cols is None and threshold > 0
    outliers = detect or outlier_cols is not None
    plan_, ws = _layout(
        index, m, n, k, cublas_ok, detect, outliers, False, x.element_size(), wgmma_ok
    )  # fmt: skip
    scratch = _scratch(ws.size, x.device, stream)
    base = scratch.data_ptr()
    gathered = ws.ldc > 0
    zero_at, zero_bytes = base + ws.mask, ws.zeroed_bytes
    stream_mask = None
    if outlier_cols is not None:
        mask, mode = _static_mask(outlier_cols, k).data_ptr(), MODE_STATIC
    elif detect:
        mask, mode = base + ws.mask, MODE_DETECT
        if gathered:  # the gather kernel reads the mask last: it leaves a stream's mask zeroed
            stream_mask = _stream_mask(x.device, stream, _ceil(k, 32))
        if stream_mask is not None:
            mask = stream_mask.data_ptr()
            zero_at, zero_bytes = zero_at + ws.mask_bytes, zero_bytes - ws.mask_bytes
    else:
        mask, mode = 0, MODE_PLAIN
    quantize = _quantize_launch(x, base + ws.q, base + ws.absmax, mask, mode, threshold)
    steps = [quantize]
    # The stream's mask is zeroed by int8_wgmma.cu once the gather is complete (a few stores),
    # else by the gather kernel's last block (an arrival counter: ~1 us more, benches/NOTES.md v28).
    listed = plan_.kernel == "wgmma"
    spent = mask if stream_mask is not None and listed else 0
    dense = gathered and listed and _has_dense_part(plan_)
    above = _hand_over_above(x, CB, plan_) if auto and detect and gathered else -1
    if gathered:
        clear = stream_mask is not None and not listed
        gather = _gather_launch(x, CB, base + ws.q, mask, base, ws, listed, clear, dense, above)
        steps.append(gather)
    ops = _Operands(
        base + ws.q, k, CB.data_ptr(), CB.stride(0), base + ws.absmax, scb.data_ptr(),
        _ptr(bias), 0 if bias is None else BIAS_KINDS[bias.dtype], x.data_ptr(), x.stride(0),
        mask, out_ptr, 0, ldo,
        base + ws.xc if gathered else 0, base + ws.wc if gathered else 0, ws.ldc,
        base + ws.count if gathered else 0, spent, _ceil(k, 32) if spent else 0,
        base + ws.hot if dense else 0, above,
    )  # fmt: skip
    steps += _product_steps(index, m, n, k, ops, plan_, base, ws, aligned, x.dtype, raw=False)
    if above >= 0:
        gate = (base + ws.count, above)
        steps.append(_weight_only_launch(x, CB, scb, bias, out_ptr, ldo, gate=gate))
    # a hand-over's weight-only kernel reads x through a tensor map: 16-byte aligned inputs only
    vector_input = _quantize_vectorized(x, base + ws.q) or above >= 0
    return _Int8Call(scratch, zero_at, zero_bytes, steps, vector_input, stream_mask)


def _hand_over_above(x: Tensor, CB: Tensor, plan_: Plan) -> int:
    """The outlier columns above which "auto" hands an LLM.int8() call over to the weight-only
    product (see HAND_OVER_DENSE_ABOVE), or -1 where it does not: plans of other kernels than the
    wgmma ones, fp32 inputs, operands the weight-only wgmma kernel cannot read, or turned off."""
    if not (_HAND_OVER and plan_.kernel == "wgmma" and x.dtype != torch.float32):
        return -1
    if not _aligned(x.shape[1], CB, x):
        return -1
    if _has_dense_part(plan_):
        return HAND_OVER_DENSE_ABOVE
    if plan_.tile_rows == INT8_WGMMA_PAIR_TILE[0]:
        return pair_hand_over_above(*x.shape)
    return HAND_OVER_LISTED_ABOVE[plan_.tile_rows]


def int8_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
    out: Optional[Tensor] = None,
    auto: bool = False,
) -> Tensor:
    """LLM.int8() linear: one quantize launch and one fused matmul launch (two with cuBLAS), no
    host sync. Writes into `out` ([M, N], x.dtype, contiguous) when given. `auto`: the call is
    "auto" arithmetic's, which may hand inputs with many outlier columns over to the weight-only
    product, decided on the GPU (`_hand_over_above`)."""
    x, CB = x.contiguous(), CB.contiguous()
    n = CB.shape[0]
    out, done = _output(x, n, bias, out)
    if done:
        return out
    stream = current_stream(x.device.index)
    bias = None if bias is None else bias.contiguous()
    scb = SCB.contiguous()
    call = _int8_call(x, CB, scb, bias, threshold, outlier_cols, out.data_ptr(), out.stride(0),
                      stream, auto)  # fmt: skip
    _zero(call.zero_at, call.zero_bytes, stream)
    _run_int8(call)
    return out


def _run_int8(call: _Int8Call) -> None:
    """Launches the steps of `call`; where one fails to launch after the quantize kernel, zeroes
    the stream's mask again (no gather kernel will), so that later calls start from a clean one."""
    try:
        _run(call.steps)
    except BaseException:
        if call.stream_mask is not None:
            call.stream_mask.zero_()
        raise


# ---- weight-only arithmetic: fp16 / bf16 activations times the int8 weight, one launch ----


def weight_only_row_limit(
    weight_elements: int, wgmma: bool = False, int8_fills: bool = False
) -> int:
    """The most rows "auto" arithmetic multiplies weight-only for a weight of this size (on a
    GPU that runs weight_only_wgmma.cu when `wgmma`; `int8_fills`: the weight's output rows make
    int8_wgmma.cu blocks for WGMMA_INT8_FILL_SHARE of the SMs or more)."""
    if wgmma and int8_fills:
        table, default = WGMMA_INT8_FILLS_ROW_LIMITS, WGMMA_INT8_FILLS_MAX_ROWS
    elif wgmma:
        table, default = WGMMA_WEIGHT_ONLY_ROW_LIMITS, WGMMA_WEIGHT_ONLY_MAX_ROWS
    else:
        table, default = WEIGHT_ONLY_ROW_LIMITS, WEIGHT_ONLY_MAX_ROWS
    return next((rows for elements, rows in table if weight_elements <= elements), default)


def prefers_weight_only(x: Tensor, CB: Tensor) -> bool:
    """Whether "auto" arithmetic takes the weight-only kernel for this call: fp16 / bf16
    activations, few rows (memory-bound: the weight streams once, no activation quantization),
    and tensor cores for fp16 / bf16 (sm_80+)."""
    n, k = CB.shape
    wgmma = x.is_cuda and uses_wgmma(x.device.index)
    blocks = _ceil(n, WGMMA_WEIGHT_ROWS)
    fills = wgmma and blocks >= WGMMA_INT8_FILL_SHARE * sm_count(x.device.index)
    rows = weight_only_row_limit(n * k, wgmma, fills)
    return (
        x.dtype in (torch.float16, torch.bfloat16)
        and x.shape[0] <= rows
        and check_device(x.device.index) >= MMA_CAPABILITY
    )


def _resident_blocks(
    index: int, name: str, file: str, shared_memory: int, threads: int = 256
) -> int:
    """Blocks of `threads` threads of kernel `name` that fit on one SM at once (registers,
    shared memory, threads)."""
    registers = kernel(index, file, name).attributes["num_regs"]
    per_thread = _ceil(registers, REGISTER_GRANULE) * REGISTER_GRANULE
    resident = min(THREADS_PER_SM // threads, REGISTERS_PER_SM // (threads * per_thread))
    if shared_memory:
        per_sm = shared_memory_per_sm(index)
        resident = min(resident, per_sm // (shared_memory + 1024))  # 1 KB reserved per block
    return max(1, resident)


def _weight_only_shared(index: int, name: str, tile: tuple[int, ...]) -> Optional[int]:
    """Shared memory of a weight_only_linear.cu block, static and dynamic, for a tile with a
    shared-memory ring (0 without: its partial sums never limit the blocks per SM); None where
    it exceeds what a block of GPU `index` may have."""
    if not tile[4]:
        return 0
    static = kernel(index, "weight_only_linear.cu", name).attributes["shared_size_bytes"]
    shared = weight_only_shared_memory(tile) + static
    return shared if shared <= shared_memory_per_block(index) else None


def weight_only_tile_fits(index: int, tile: tuple[int, ...], dtype_name: str = "__half") -> bool:
    """Whether GPU `index` runs weight_only_linear.cu's `tile` (its shared memory)."""
    name = weight_only_name(dtype_name, tile, True)
    return _weight_only_shared(index, name, tile) is not None


_weight_only_tiles: dict[tuple[int, int, int, str, bool], tuple[int, ...]] = {}


def weight_only_tiles(
    index: int, m: int, n: int, dtype_name: str = "__half", k: int = 0
) -> tuple[int, ...]:
    """weight_only_linear.cu's tile (ROW_TILES, TOKEN_TILES, WARP_ROWS, SPAN, STAGES[, WARPS])
    for an [m, k] x [n, k]^T call: one token tile up to 8 rows, else two (16 rows per block; more
    blocks along M beyond). Where the ring tile for that token tile (WEIGHT_ONLY_RING_TILES)
    fits on the GPU and its blocks fit one wave of its resident slots, that tile: its warps keep
    STAGES - 1 chunks in flight from shared memory, which pays where few blocks stream the
    weight; blocks in waves do as well with the register tiles, which fit more blocks per SM.
    Before it, the narrower ring tile (WEIGHT_ONLY_NARROW_RING_TILES) where its blocks fit one
    per SM: on weights of few rows the wider tile's blocks leave SMs idle. In its place, with
    WEIGHT_ONLY_LONG_K columns or more, its 16-warp twin (WEIGHT_ONLY_LONG_RING_TILES) where
    that fits one wave too: each warp's chain of chunks half as long.
    Otherwise the register tile of least estimated cost: the weight bytes plus the activation
    re-reads (each block reads its tokens' rows once: 2 * tokens / rows-per-block times the
    weight bytes, at ACTIVATION_REREAD_COST of a weight byte's cost), over the fill of the GPU's
    resident block slots (blocks / slots over its ceiling: a last wave that is nearly empty costs
    as much as a full one). Checked against every tile by benches/kernel_choice.py --weight-only
    (weights cold in L2)."""
    long_k = k >= WEIGHT_ONLY_LONG_K
    key = (index, m, n, dtype_name, long_k)
    found = _weight_only_tiles.get(key)
    if found is not None:
        return found
    token_tiles = 1 if m <= 8 else 2
    sms = sm_count(index)

    def blocks_and_slots(tile: tuple[int, ...]) -> tuple[int, int]:
        row_tiles, _, warp_rows, *_ = tile
        name = weight_only_name(dtype_name, tile, True)
        shared = _weight_only_shared(index, name, tile)
        if shared is None:
            return 1, 0
        blocks = _ceil(n, 16 * row_tiles * warp_rows) * _ceil(m, 8 * token_tiles)
        threads = 32 * weight_only_warps(tile)
        resident = _resident_blocks(index, name, "weight_only_linear.cu", shared, threads)
        return blocks, resident * sms

    narrow = WEIGHT_ONLY_NARROW_RING_TILES.get(token_tiles)
    if narrow is not None:
        blocks, slots = blocks_and_slots(narrow)
        if blocks <= min(slots, sms):
            _weight_only_tiles[key] = narrow
            return narrow
    ring = WEIGHT_ONLY_RING_TILES[token_tiles]
    blocks, slots = blocks_and_slots(ring)
    if blocks <= slots:
        long = WEIGHT_ONLY_LONG_RING_TILES.get(token_tiles) if long_k else None
        if long is not None and blocks <= blocks_and_slots(long)[1]:
            ring = long
        _weight_only_tiles[key] = ring
        return ring
    best, best_cost = WEIGHT_ONLY_TILES[0], math.inf
    for tile in WEIGHT_ONLY_TILES:
        row_tiles, tiles, warp_rows, _, stages = tile[:5]
        if tiles != token_tiles or stages or weight_only_warps(tile) != THREADS // 32:
            continue
        blocks, slots = blocks_and_slots(tile)
        waves = blocks / slots
        tokens = min(m, 8 * token_tiles)  # each reads 2 bytes per column of K, a weight row 1
        rereads = ACTIVATION_REREAD_COST[tiles] * 2 * tokens / (16 * row_tiles * warp_rows)
        cost = (1 + rereads) * math.ceil(waves) / waves
        if cost < best_cost - 1e-9:
            best, best_cost = tile, cost
    _weight_only_tiles[key] = best
    return best


def weight_only_gemm_splits(index: int) -> tuple[int, ...]:
    """The K splits of weight_only_gemm.cu GPU `index` runs: more than one needs clusters."""
    clusters = check_device(index) >= SPLIT_CAPABILITY
    return WEIGHT_ONLY_GEMM_SPLITS if clusters else (1,)


_weight_only_gemm_plans: dict[tuple, tuple[tuple[int, int, int, int], int]] = {}


def weight_only_gemm_plan(
    index: int, m: int, n: int, k: int, dtype_name: str = "__half"
) -> tuple[tuple[int, int, int, int], int]:
    """weight_only_gemm.cu's (tile, splits) for an [m, k] x [n, k]^T call: the token tile of
    WEIGHT_ONLY_GEMM_TOKEN_TILES (more blocks along M where it holds fewer rows), and on sm_90 K
    split across a cluster of 2 or 4 blocks where the blocks alone would leave SMs idle: the
    split of least cost, counted as the waves of blocks over the GPU's resident slots (a last
    wave that is nearly empty costs a whole one) divided among the splits, plus GEMM_SPLIT_COST
    per split.
    Checked against every plan by benches/kernel_choice.py --weight-only."""
    key = (index, m, n, k, dtype_name)
    found = _weight_only_gemm_plans.get(key)
    if found is not None:
        return found
    tile = next(
        (t for rows, t in WEIGHT_ONLY_GEMM_TOKEN_TILES if m <= rows), WEIGHT_ONLY_GEMM_TILES[-1]
    )
    bm, bn = weight_only_gemm_rows(tile)

    def slots(splits: int) -> int:
        name = weight_only_gemm_name(dtype_name, tile, splits)
        shared = weight_only_gemm_shared_memory(tile)
        return sm_count(index) * _resident_blocks(index, name, "weight_only_gemm.cu", shared)

    blocks, k_tiles = _ceil(n, bn) * _ceil(m, bm), _ceil(k, WEIGHT_ONLY_GEMM_K_TILE)
    splits = _least_cost_splits(blocks, k_tiles, weight_only_gemm_splits(index), slots)
    found = _weight_only_gemm_plans[key] = (tile, splits)
    return found


def _least_cost_splits(blocks: int, k_tiles: int, choices, slots) -> int:
    """Of `choices` (ascending K splits), the one of least cost for `blocks` blocks over
    `k_tiles` K tiles: the waves of blocks over the GPU's resident slots (`slots(splits)`; a
    last wave that is nearly empty costs a whole one) divided among the splits, plus
    GEMM_SPLIT_COST per split; each split keeps MIN_K_TILES_PER_GEMM_SPLIT K tiles at least,
    and splitting stops once the blocks alone fill every slot."""
    best, best_cost = 1, math.inf
    for splits in choices:
        if k_tiles < splits * MIN_K_TILES_PER_GEMM_SPLIT:
            break  # the splits ascend
        resident = slots(splits)
        if splits > 1 and blocks >= resident:
            break  # every slot busy already
        cost = math.ceil(blocks * splits / resident) / splits + GEMM_SPLIT_COST * (splits - 1)
        if cost < best_cost - 1e-9:
            best, best_cost = splits, cost
    return best


def uses_wgmma(index: int) -> bool:
    """Whether GPU `index` runs weight_only_wgmma.cu: sm_90 (H100, H200) and a driver that
    encodes TMA tensor maps."""
    return check_device(index) == WGMMA_CAPABILITY and tensor_maps.available()


_weight_only_wgmma_plans: dict[tuple, tuple[int, int]] = {}


def weight_only_wgmma_plan(
    index: int, m: int, n: int, k: int, dtype_name: str = "__half", stream_k: bool = True
) -> tuple[int, int]:
    """weight_only_wgmma.cu's (tokens, splits) for an [m, k] x [n, k]^T call: of the token tiles
    (up to the first that holds the rows twice over) and K splits, the pair of least estimated
    cost: the waves of blocks over the GPU's resident slots (one block per SM streams at a
    ceiling of its own, so the blocks should cover the SMs; clusters of 4 fill fewer) times each
    block's cost (its K tiles, each 1 + WGMMA_TOKEN_COST per token, WGMMA_BLOCK_COST, and
    WGMMA_SPLIT_BLOCK_COST where K is split), plus WGMMA_SPLIT_COSTS; with `stream_k` also the
    stream-K kernel (`WGMMA_STREAM_K`: each SM's share of the K tiles, WGMMA_BLOCK_COST and
    WGMMA_STREAM_K_COST). Checked against every plan by benches/kernel_choice.py
    --weight-only."""
    key = (index, m, n, k, dtype_name, stream_k)
    found = _weight_only_wgmma_plans.get(key)
    if found is not None:
        return found
    best, best_cost = (WGMMA_TOKEN_TILES[-1][0], 1), math.inf
    k_tiles, row_blocks = _ceil(k, WGMMA_K_TILE), _ceil(n, WGMMA_WEIGHT_ROWS)
    for tokens, stages in WGMMA_TOKEN_TILES:
        if tokens >= 2 * m:
            break  # a smaller tile holds the rows already
        plans = _cluster_plan_costs(
            index, m, n, k, tokens, WGMMA_TOKEN_COST, "weight_only_wgmma.cu",
            lambda splits, t=tokens: weight_only_wgmma_name(dtype_name, t, splits),
            weight_only_wgmma_shared_memory(tokens, stages),
        )  # fmt: skip
        for cost, splits in plans:
            if cost < best_cost - 1e-9:
                best, best_cost = (tokens, splits), cost
        tiles = _ceil(m, tokens) * row_blocks
        if stream_k and tiles <= STREAMK_MAX_TILES:
            cost = _stream_k_cost(index, tiles * k_tiles, 1 + WGMMA_TOKEN_COST * tokens)
            if cost < best_cost - 1e-9:
                best, best_cost = (tokens, WGMMA_STREAM_K), cost
    for tokens, _ in WGMMA_WIDE_TOKEN_TILES if stream_k else ():
        if tokens >= 2 * m:
            break
        tiles = _ceil(m, tokens) * _ceil(n, WGMMA_WIDE_TILE_ROWS)
        if tiles <= STREAMK_MAX_TILES:
            cost = _stream_k_cost(index, tiles * k_tiles, 2 + WGMMA_WIDE_TOKEN_COST * tokens)
            cost += WGMMA_WIDE_COST
            if cost < best_cost - 1e-9:
                best, best_cost = (tokens, WGMMA_STREAM_K_WIDE), cost
    _weight_only_wgmma_plans[key] = best
    return best


def _stream_k_cost(index: int, units: int, unit_cost: float) -> float:
    """A stream-K plan's cost: each SM's share of the units, WGMMA_BLOCK_COST and
    WGMMA_STREAM_K_COST."""
    per_sm = _ceil(units, min(sm_count(index), units))
    return per_sm * unit_cost + WGMMA_BLOCK_COST + WGMMA_STREAM_K_COST


def _cluster_plan_costs(
    index: int, m: int, n: int, k: int, tokens: int, token_cost: float, file: str, name_of,
    shared: int,
) -> list[tuple[float, int]]:  # fmt: skip
    """(cost, splits) of a wgmma kernel's plans with `tokens` tokens per block and K split across
    clusters of WGMMA_SPLITS blocks (`name_of(splits)`: the instantiation in `file`, `shared`
    bytes of shared memory): the waves of blocks over the GPU's resident slots (one block per SM
    streams at a ceiling of its own, so the blocks should cover the SMs; clusters of 4 fill
    fewer) times each block's cost (its K tiles, each 1 + `token_cost` per token,
    WGMMA_BLOCK_COST, and WGMMA_SPLIT_BLOCK_COST where K is split), plus WGMMA_SPLIT_COSTS."""
    k_tiles, row_blocks = _ceil(k, WGMMA_K_TILE), _ceil(n, WGMMA_WEIGHT_ROWS)
    costs = []
    for splits in WGMMA_SPLITS:
        if splits > 1 and k_tiles < splits * MIN_K_TILES_PER_GEMM_SPLIT:
            break
        resident = _resident_blocks(index, name_of(splits), file, shared, WGMMA_THREADS)
        clusters = int(WGMMA_CLUSTER_FILL[splits] * sm_count(index) * resident) // splits
        blocks = _ceil(m, tokens) * row_blocks * splits
        per_block = _ceil(k_tiles, splits) * (1 + token_cost * tokens) + WGMMA_BLOCK_COST
        per_block += WGMMA_SPLIT_BLOCK_COST if splits > 1 else 0.0
        waves = _ceil(blocks, clusters * splits)
        costs.append((waves * per_block + WGMMA_SPLIT_COSTS[splits], splits))
    return costs


_int8_wgmma_plans: dict[tuple, tuple[int, int]] = {}


def int8_wgmma_plan(index: int, m: int, n: int, k: int) -> tuple[int, int]:
    """int8_wgmma.cu's (tokens, splits) for an [m, k] x [n, k]^T call: of the token tiles (up to
    the first that holds the rows twice over) and K splits, the pair of least estimated cost
    (`_cluster_plan_costs`, INT8_WGMMA_TOKEN_COST per token). Checked against every plan by
    benches/kernel_choice.py --int8."""
    key = (index, m, n, k)
    found = _int8_wgmma_plans.get(key)
    if found is not None:
        return found
    best, best_cost = (INT8_WGMMA_TOKEN_TILES[-1][0], 1), math.inf
    for tokens, stages in INT8_WGMMA_TOKEN_TILES:
        if tokens >= 2 * m and best_cost < math.inf:
            break  # a smaller tile holds the rows already
        plans = _cluster_plan_costs(
            index, m, n, k, tokens, INT8_WGMMA_TOKEN_COST, "int8_wgmma.cu",
            lambda splits, t=tokens: int8_wgmma_name("__half", t, splits),
            int8_wgmma_shared_memory(tokens, stages),
        )  # fmt: skip
        for cost, splits in plans:
            if cost < best_cost - 1e-9:
                best, best_cost = (tokens, splits), cost
    _int8_wgmma_plans[key] = best
    return best


def int8_tokens_rows(index: int, m: int, n: int, tokens: int) -> int:
    """int8_wgmma_tokens.cu's weight rows per block for m rows in tiles of `tokens` and a weight
    of n rows: of INT8_TOKENS_TILES' (one block per SM, each filling its shared memory), the
    fewest weight bytes per SM (waves of blocks times the rows of each), the most rows on a tie."""
    sms = sm_count(index)
    consumers = tokens // 64
    return min(
        (r for r, c, _ in INT8_TOKENS_TILES if c == consumers),
        key=lambda r: (_ceil(_ceil(m, tokens) * _ceil(n, r), sms) * r, -r),
    )


def wgmma_serves(index: int, m: int, n: int) -> bool:
    """Whether the weight-only product of m rows by a weight of n rows runs
    weight_only_wgmma.cu (aligned operands assumed)."""
    rows = WGMMA_MIN_ROWS_WIDE if n >= WGMMA_WIDE_ROWS else WGMMA_MIN_ROWS
    return m >= rows and uses_wgmma(index)


def weight_only_tma_plan(index: int, m: int, n: int, k: int) -> Optional[tuple[int, int, int, int]]:
    """weight_only_tma.cu's (row tiles, token tiles, stages, splits) for the weight-only product
    of m rows by a weight of n rows and k columns, or None where another kernel serves it
    (aligned operands assumed)."""
    if not uses_wgmma(index):
        return None
    if TMA_MIN_ROWS <= m <= TMA_MAX_ROWS and n >= TMA_MIN_WEIGHT_ROWS:
        return (4, 2, 2, 1) if n >= TMA_WIDE_WEIGHT_ROWS else (2, 2, 2, 1)
    if TMA_MAX_ROWS < m <= TMA_SPLIT_MAX_ROWS and n < TMA_MIN_WEIGHT_ROWS and k >= TMA_SPLIT_MIN_K:
        return (2, 4, 2, 2)
    return None


def weight_only_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    out: Optional[Tensor] = None,
    tiles: Optional[tuple[int, ...]] = None,
    gemm: Optional[tuple[tuple[int, int, int, int], int]] = None,
    wgmma: Optional[tuple[int, int]] = None,
    tma: Optional[tuple[int, int, int, int]] = None,
) -> Tensor:
    """``x @ (CB * SCB / 127).T + bias`` with the activations in their own precision: one
    launch, no workspace, no host sync. Below WEIGHT_ONLY_GEMM_MIN_ROWS rows (or with unaligned
    operands) weight_only_linear.cu, from there weight_only_gemm.cu; on sm_90 from
    WGMMA_MIN_ROWS rows (`wgmma_serves`) weight_only_wgmma.cu. fp32 activations (no fp32
    tensor-core product) multiply the dequantized weight with torch instead. `tiles` (the first
    kernel's tile, `weight_only_tiles`), `gemm` (the second's tile and splits,
    `weight_only_gemm_plan`) and `wgmma` (the third's tokens and splits,
    `weight_only_wgmma_plan`) override the plan (benches/kernel_choice.py), as `tma` (row tiles,
    token tiles, stages, splits: weight_only_tma.cu on sm_90, `weight_only_tma_plan`) does."""
    if x.dtype == torch.float32:
        return dense_weight_only_linear(x, CB, SCB, bias, out=out)
    # Contiguous operands held here until the launch (the launch reads their addresses).
    x, CB, SCB = x.contiguous(), CB.contiguous(), SCB.contiguous()
    bias = None if bias is None else bias.contiguous()
    out, done = _output(x, CB.shape[0], bias, out)
    if done:
        return out
    ldo = out.stride(0)
    launch = _weight_only_launch(x, CB, SCB, bias, out.data_ptr(), ldo, tiles, gemm, wgmma, tma)
    launch.kernel.launch(launch.grid, launch.shared_mem, *launch.args, dependent=launch.dependent)
    return out


# weight_only_wgmma_streamk's workspace, one per GPU and stream (launches on one stream run one
# after the other): a counter per output tile, which every launch leaves at zero, then two partial
# tiles per block (one block per SM) of the largest token tile. Kept for the process's life: CUDA
# graphs captured with it read it at every replay.
STREAMK_MAX_TILES = 1 << 16
STREAMK_CONSUMER_THREADS = 256  # weight_only_wgmma.cu: two consumer warpgroups
_streamk_workspaces: dict[tuple[int, int], Tensor] = {}


def _streamk_workspace(device: torch.device, stream: int) -> Optional[Tensor]:
    """The stream-K workspace of `device` for `stream`, allocated zeroed on first use (during a
    CUDA-graph capture the zeroing is captured too); None inside `transient_workspaces()`."""
    key = (device.index, stream)
    found = _streamk_workspaces.get(key)
    if found is None:
        if workspaces_are_transient():
            return None
        narrow = max(tokens for tokens, _ in WGMMA_TOKEN_TILES)
        wide = max(tokens for tokens, _ in WGMMA_WIDE_TOKEN_TILES) * WGMMA_WIDE_TILE_ROWS
        largest = max(narrow, wide // WGMMA_WEIGHT_ROWS)  # accumulators per thread, times 2
        partials = 2 * sm_count(device.index) * STREAMK_CONSUMER_THREADS * (largest // 2)
        found = torch.zeros(4 * (STREAMK_MAX_TILES + partials), dtype=torch.uint8, device=device)
        _streamk_workspaces[key] = found
    return found


def _weight_only_launch(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    out_ptr: int,
    ldo: int,
    tiles: Optional[tuple[int, ...]] = None,
    gemm: Optional[tuple[tuple[int, int, int, int], int]] = None,
    wgmma: Optional[tuple[int, int]] = None,
    tma: Optional[tuple[int, int, int, int]] = None,
    gate: tuple[int, int] = (0, 0),
) -> _Launch:
    """The launch of `weight_only_linear` for x [m, k], CB [n, k], SCB and bias, all contiguous
    (the caller keeps them alive until the launch), writing rows of `ldo` elements at
    `out_ptr`. `gate`: (address of an outlier count, columns above which the kernel runs) for
    the hand-over of an "auto" LLM.int8() call (`_int8_call`), on weight_only_wgmma.cu; (0, 0):
    none."""
    m, k = x.shape
    n = CB.shape[0]
    index = x.device.index
    dtype_name = C_TYPES[x.dtype]
    aligned = _aligned(k, CB, x)
    args = (
        x.data_ptr(), x.stride(0), CB.data_ptr(), CB.stride(0), SCB.data_ptr(),
        _ptr(bias), 0 if bias is None else BIAS_KINDS[bias.dtype], m, n, k, out_ptr, ldo,
    )  # fmt: skip
    automatic = tiles is None and gemm is None and aligned
    if gate[0] and (not automatic or tma is not None or not uses_wgmma(index)):
        raise ValueError("a gated weight-only launch runs weight_only_wgmma.cu on aligned operands")
    if tma is None and automatic and wgmma is None and not gate[0]:
        tma = weight_only_tma_plan(index, m, n, k)
    if tma is not None:
        if not aligned or not uses_wgmma(index):
            raise ValueError("weight_only_tma.cu takes aligned operands on sm_90")
        if tma not in WEIGHT_ONLY_TMA_TILES:
            raise ValueError(f"weight_only_tma.cu has no tile {tma}: {WEIGHT_ONLY_TMA_TILES}")
        row_tiles, token_tiles, _, splits = tma
        name = weight_only_tma_name(dtype_name, tma)
        shared = weight_only_tma_shared_memory(tma)
        tokens = 8 * token_tiles
        tma_args = (tensor_map_2d(x, 64, tokens, 128), *args[2:])
        grid = (_ceil(m, tokens), _ceil(n, 16 * row_tiles), splits)
        tma_kernel = kernel(index, "weight_only_tma.cu", name)
        static = tma_kernel.attributes["shared_size_bytes"]
        resident = _resident_blocks(index, name, "weight_only_tma.cu", shared + static)
        dependent = grid[0] * grid[1] * grid[2] > resident * sm_count(index)
        return _Launch(tma_kernel, grid, shared, tma_args, 0, 9, True, None, dependent)
    if wgmma is not None or (automatic and (gate[0] or wgmma_serves(index, m, n))):
        if not aligned:
            raise ValueError("weight_only_wgmma.cu needs 16-byte aligned operands")
        tokens, splits = wgmma or weight_only_wgmma_plan(index, m, n, k, dtype_name)
        stages, rows = weight_only_wgmma_tile(tokens, splits)
        output_tiles = _ceil(m, tokens) * _ceil(n, rows)
        workspace, stream = None, None
        if splits in (WGMMA_STREAM_K, WGMMA_STREAM_K_WIDE):
            if output_tiles > STREAMK_MAX_TILES:
                raise ValueError(
                    f"stream-K takes up to {STREAMK_MAX_TILES} tiles, not {output_tiles}"
                )
            stream = current_stream(index)
            workspace = _streamk_workspace(x.device, stream)
            if workspace is None:  # no workspace may be kept: the best plan with clusters
                tokens, splits = weight_only_wgmma_plan(index, m, n, k, dtype_name, False)
                stages, rows = weight_only_wgmma_tile(tokens, splits)
        name = weight_only_wgmma_name(dtype_name, tokens, splits)
        shared = weight_only_wgmma_shared_memory(tokens, stages, rows)
        x_map = tensor_map_2d(x, 64, tokens, 128)  # two boxes per K tile
        w_map = tensor_map_2d(CB, WGMMA_K_TILE, rows, 128)
        wgmma_kernel = kernel(index, "weight_only_wgmma.cu", name)
        wgmma_args = (x_map, w_map, *args[4:], *gate)
        if workspace is None:
            grid = (_ceil(m, tokens), _ceil(n, WGMMA_WEIGHT_ROWS), splits)
            return _Launch(wgmma_kernel, grid, shared, wgmma_args, 0, 8, True)
        units = output_tiles * _ceil(k, WGMMA_K_TILE)
        grid = (min(sm_count(index), units), 1, 1)
        counters = workspace.data_ptr()
        wgmma_args = (*wgmma_args, counters + 4 * STREAMK_MAX_TILES, counters)
        return _Launch(wgmma_kernel, grid, shared, wgmma_args, 0, 8, True, stream)
    if tiles is None and aligned and (gemm is not None or m >= WEIGHT_ONLY_GEMM_MIN_ROWS):
        tile, splits = gemm or weight_only_gemm_plan(index, m, n, k, dtype_name)
        bm, bn = weight_only_gemm_rows(tile)
        name = weight_only_gemm_name(dtype_name, tile, splits)
        return _Launch(
            kernel(index, "weight_only_gemm.cu", name), (_ceil(n, bn), _ceil(m, bm), splits),
            weight_only_gemm_shared_memory(tile), args, 0, 10, False,
        )  # fmt: skip
    tile = tiles or weight_only_tiles(index, m, n, dtype_name, k)
    if not aligned:
        tile = weight_only_register_twin(tile)  # a shared-memory ring takes 16-byte pieces
    row_tiles, token_tiles, warp_rows, *_ = tile
    name = weight_only_name(dtype_name, tile, aligned)
    shared = weight_only_shared_memory(tile)
    blocked = _weight_only_shared(index, name, tile)
    grid = (_ceil(m, 8 * token_tiles), _ceil(n, 16 * row_tiles * warp_rows), 1)
    if blocked is None:
        raise ValueError(f"weight_only_linear.cu tile {tile} needs more shared memory than GPU "
                         f"{index} gives a block")  # fmt: skip
    # As a dependent only where the blocks come in more than one wave: a dependent's blocks take
    # the slots the kernel before leaves free as they come, and a grid of one part-filled wave of
    # several blocks per SM then crowds some SMs (11008x4096 at one row: 15.5 -> 18.7 us, where
    # 8192x28672 gains 1.2; benches/NOTES.md v16).
    threads = 32 * weight_only_warps(tile)
    resident = _resident_blocks(index, name, "weight_only_linear.cu", blocked, threads)
    dependent = grid[0] * grid[1] > resident * sm_count(index)
    return _Launch(
        kernel(index, "weight_only_linear.cu", name), grid, shared, args, 0, 10, False, None,
        dependent,
    )  # fmt: skip


class PreparedLinear:
    """The forward of one layer for inputs of one shape, dtype and device, its launches prepared
    once (`prepared.PreparedLaunch`, or for LLM.int8()'s several a `prepared.PreparedSequence`):
    per call an output allocation and the launches. Inputs must be contiguous
    (`prepare_linear`'s caller checks). Returns None (nothing launched) for an input that is not
    16-byte aligned where the launches were prepared for aligned ones (vector loads, TMA), and
    where the launches decline the call (another stream than the one whose workspace they were
    prepared with, ...): the caller runs the general path then."""

    def __init__(self, launch, out_shape: tuple[int, ...], x: Tensor, aligned: bool) -> None:
        self.launch, self.aligned = launch, aligned
        self.out_shape, self.dtype, self.device = out_shape, x.dtype, x.device

    def __call__(self, x: Tensor) -> Optional[Tensor]:
        address = x.data_ptr()
        if self.aligned and address % 16:
            return None
        stream = self.launch.accepts()
        if stream is None:
            return None
        out = torch.empty(self.out_shape, dtype=self.dtype, device=self.device)
        self.launch.launch(stream, address, out.data_ptr())
        return out


def prepare_linear(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
    arithmetic: str,
) -> Optional[PreparedLinear]:
    """A `PreparedLinear` for inputs shaped as `x` (contiguous, [..., K]): the weight-only
    product's one launch (forced or picked by "auto"), or LLM.int8()'s launches with outlier
    columns detected per call (or none) on this thread's workspace for the current stream. None
    where neither applies: static outlier columns, fp32 or empty inputs, operands that are not
    contiguous (their addresses are kept), a CUDA graph being captured, torch.compile'd callers
    (`transient_workspaces`), or a workspace too large to keep."""
    k = x.shape[-1]
    m = x.numel() // k if k else 0
    n = CB.shape[0]
    x2d = x.reshape(m, k)
    weight_only = arithmetic == "weight_only" or (
        arithmetic == "auto" and prefers_weight_only(x2d, CB)
    )
    usable = x.dtype in (torch.float16, torch.bfloat16) and x.is_contiguous()
    contiguous = CB.is_contiguous() and SCB.is_contiguous()
    contiguous = contiguous and (bias is None or bias.is_contiguous())
    if not (usable and contiguous and m and n and k):
        return None
    out_shape = (*x.shape[:-1], n)
    if weight_only:
        launch = _weight_only_launch(x2d, CB, SCB, bias, 0, n)
        return PreparedLinear(PreparedLaunch(*launch), out_shape, x, _aligned(k, CB, x2d))
    if outlier_cols is not None or _workspaces_transient_now():
        return None  # static columns; or a workspace of this call's own, not one to keep
    stream = current_stream(x.device.index)
    call = _int8_call(x2d, CB, SCB, bias, threshold, None, 0, n, stream, arithmetic == "auto")
    if call.scratch.numel() > CACHED_WORKSPACE_BYTES:
        return None  # a workspace of its own per call (`_scratch`): not one to keep
    steps = [PreparedLaunch(*step) if isinstance(step, _Launch) else step for step in call.steps]
    sequence = PreparedSequence(
        steps, call.scratch, call.zero_at, call.zero_bytes, stream, call.stream_mask
    )  # fmt: skip
    return PreparedLinear(sequence, out_shape, x, call.vector_input)
