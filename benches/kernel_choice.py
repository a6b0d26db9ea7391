"""Which int8 kernel for which shape: the GPU time of one llmint8 forward (threshold 6, planted
outliers, CUDA-graph replayed so that host overhead is out) under every plan the CUDA backend can
run (GEMV; GEMM with row tiles 32, 64, 128, with and without split K; cuBLAS's int8 GEMM and the
epilogue from CUBLAS_MIN_ROWS rows), next to the plan
`llmint8.backends.cuda.plan` picks. Used to set the backend's thresholds.

With --weight-only: for M up to 128, every tile (row tiles, token tiles, warp rows, span) of the
weight-only kernel for up to 16 rows (on sm_90 also the tiles of the one whose activations TMA
stages, `tma...`, up to twice the rows), and from 17 rows every plan (token tile, split K) of the
weight-only GEMM (mma.sync, `gemm...`) and on sm_90 of the wgmma kernel (`wgmma...`) with the
small kernel's tile beside it, next to the plan the backend picks, LLM.int8()'s picked plan and
fp16 nn.Linear (sets the WEIGHT_ONLY_* and WGMMA_* row limits and the plans' costs), each call of
a graph reading another copy of the weights so that they come from memory, not L2, as in a model.

With --int8: LLM.int8()'s product under each of its plans (cuBLAS and the epilogue, the mma.sync
GEMM, and on sm_90 every int8_wgmma.cu plan), weights cold in L2, beside fp16 (sets
INT8_WGMMA_MIN_ROWS and int8_wgmma_plan's costs).

With --dependent-launch: the default forward and LLM.int8() forced, weights cold in L2, in plain
stream order and with programmatic dependent launch (sm_90), beside fp16.

With --breakdown: LLM.int8() forced at threshold 6 (6 planted outlier columns) and 0, weights
cold in L2, beside fp16, with each kernel's GPU time per forward (torch.profiler).

With --fixed-cost: the weight-only product (its plans as shipped), LLM.int8() forced at the
largest row count and fp16 nn.Linear over weights of K = 4096 by N = 2048..28672 and of N = 4096
by K = 2048..16384, weights cold in L2, each fitted as a fixed cost plus the weight's bytes at a
streaming rate (t = a + bytes / rate).

    python benches/kernel_choice.py [--quick]
        [--weight-only | --int8 | --dependent-launch | --breakdown | --fixed-cost]
        [--rows M ...] [--out choice.md]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from functools import partial

import numpy as np
import torch

import llmint8
from llmint8.backends import cuda as backend

GRID = [(4096, 4096), (4096, 11008), (11008, 4096), (8192, 28672)]
ROWS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
CALLS_PER_GRAPH = 10


def cublas_takes(n: int, k: int) -> bool:
    """Whether the backend would hand this shape to cuBLAS (the inputs here are aligned)."""
    return k % 16 == 0 and n % 4 == 0 and backend.cublas.available()


def candidates(index: int, m: int, n: int, k: int) -> dict[str, backend.Plan]:
    plans = {}
    if m <= 16:
        group = next(r for r in backend.GEMV_ROW_GROUPS if r >= m)
        columns = backend.GEMV_SPLIT_COLUMNS
        for splits in (1, 2, 4, 8):
            size = -(-k // splits // columns) * columns if splits > 1 else k
            name = "gemv" + (f"/k{splits}" if splits > 1 else "")
            plans[name] = backend.Plan("gemv", group, -(-k // size), size)
    if m >= backend.CUBLAS_MIN_ROWS and cublas_takes(n, k):
        plans["cublas"] = backend.plan(index, m, n, k, cublas_ok=True)
    k_tiles = -(-k // backend.K_TILE)
    for bm in (32, 64, 128):
        plans[f"gemm{bm}"] = backend.Plan("gemm", bm, 1, k_tiles)
        for splits in (2, 4, 8):
            per = -(-k_tiles // splits)
            plans[f"gemm{bm}/k{splits}"] = backend.Plan("gemm", bm, -(-k_tiles // per), per)
    return plans


def captured(layer, x) -> torch.cuda.CUDAGraph:
    """A CUDA graph of CALLS_PER_GRAPH calls `layer(x)` (one call first, on a side stream, so
    that compilation and caches are out of it), replayed three times."""
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            layer(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(CALLS_PER_GRAPH):
                layer(x)
    for _ in range(3):
        graph.replay()
    return graph


def graph_time_us(layer, x) -> float:
    graph = captured(layer, x)
    times = []
    for _ in range(15):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / CALLS_PER_GRAPH)
    return statistics.median(times)


WEIGHT_ONLY_ROWS = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128]


COLD_BYTES = 160 << 20  # weight copies cycled per graph: more than the L2, as a model's layers


def cycling(call, weights):
    """`call(x, weight)` over `weights` in turn, so that each call of a replayed graph reads a
    weight that is cold in L2, as a model's consecutive layers do."""
    turn = itertools.count()
    return lambda x: call(x, weights[next(turn) % len(weights)])


def gemm_plans(index: int) -> list[tuple[tuple[int, int, int, int], int]]:
    """weight_only_gemm.cu's (tile, splits) this GPU runs."""
    splits = backend.weight_only_gemm_splits(index)
    return [(tile, s) for tile in backend.WEIGHT_ONLY_GEMM_TILES for s in splits]


def gemm_label(tile: tuple[int, int, int, int], splits: int) -> str:
    """gemm<BM>x<BN>/k<splits>: a weight_only_gemm.cu plan."""
    bm, bn = backend.weight_only_gemm_rows(tile)
    return f"gemm{bm}x{bn}" + (f"/k{splits}" if splits > 1 else "")


def wgmma_plans(index: int) -> list[tuple[int, int]]:
    """weight_only_wgmma.cu's (tokens, splits) this GPU runs (none off sm_90)."""
    if not backend.uses_wgmma(index):
        return []
    splits = (*backend.WGMMA_SPLITS, backend.WGMMA_STREAM_K)
    wide = [(t, backend.WGMMA_STREAM_K_WIDE) for t, _ in backend.WGMMA_WIDE_TOKEN_TILES]
    return [(t, s) for t, _ in backend.WGMMA_TOKEN_TILES for s in splits] + wide


def tma_plans(index: int, m: int) -> list[tuple[int, int, int, int]]:
    """weight_only_tma.cu's tiles this GPU runs for m rows (none off sm_90): those of fewer than
    twice max(m, 16) tokens."""
    if not backend.uses_wgmma(index):
        return []
    return [t for t in backend.WEIGHT_ONLY_TMA_TILES if 8 * t[1] < 2 * max(m, 16)]


def tma_label(row_tiles: int, token_tiles: int, stages: int, splits: int) -> str:
    """tma<row tiles>x<token tiles>x<stages>[/k<splits>]: a weight_only_tma.cu tile."""
    return f"tma{row_tiles}x{token_tiles}x{stages}" + (f"/k{splits}" if splits > 1 else "")


def tokens_label(tokens: int, rows: int) -> str:
    """tokens<tokens>x<rows>: an unsplit int8_wgmma_tokens.cu plan, `rows` weight rows a block."""
    return f"tokens{tokens}x{rows}"


def wgmma_label(tokens: int, splits: int) -> str:
    """wgmma<tokens>/k<splits> (wgmma<tokens>/sk: stream-K, /skw: over 256-row tiles): a
    weight_only_wgmma.cu plan."""
    if splits == backend.WGMMA_STREAM_K:
        return f"wgmma{tokens}/sk"
    if splits == backend.WGMMA_STREAM_K_WIDE:
        return f"wgmma{tokens}/skw"
    return f"wgmma{tokens}" + (f"/k{splits}" if splits > 1 else "")


def planted_input(m: int, k: int) -> torch.Tensor:
    """fp16 activations [m, k] with 6 random input columns scaled by 20: planted outlier columns."""
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    x[:, torch.randperm(k)[:6]] *= 20
    return x


def cold_layer(k: int, n: int):
    """A random K×N layer's int8 scales and bias, copies of its int8 weight (more bytes than the
    L2 holds), and fp16 `nn.Linear` and LLM.int8() calls that cycle through their copies."""
    linear = torch.nn.Linear(k, n).half().cuda()
    layer = llmint8.nn.Linear8bitLt.from_linear(linear, 6.0, arithmetic="int8").cuda()
    CB, SCB, bias = layer.weight.CB, layer.weight.SCB, layer.bias
    copies = min(CALLS_PER_GRAPH, -(-COLD_BYTES // CB.numel()))
    CBs = [CB.clone() for _ in range(copies)]
    fp16s = [linear.weight.detach().clone() for _ in range(copies)]
    fp16_call = cycling(lambda x, w: torch.nn.functional.linear(x, w, linear.bias), fp16s)
    int8_call = cycling(
        lambda x, cb: llmint8.functional.int8_linear(x, cb, SCB, bias, 6.0, arithmetic="int8"), CBs
    )  # fmt: skip
    return SCB, bias, CBs, fp16_call, int8_call


def weight_only_row(k: int, n: int, rows) -> list[str]:
    index = torch.cuda.current_device()
    SCB, bias, CBs, fp16_call, int8_call = cold_layer(k, n)
    lines = []
    for m in rows:
        x = planted_input(m, k)
        fp16, int8 = graph_time_us(fp16_call, x), graph_time_us(int8_call, x)
        times = {}
        small = backend.weight_only_tiles(index, m, n, k=k)
        # From 17 rows the 16-token kernel's picked tile against every weight_only_gemm.cu plan.
        gemm = m > 16
        every = [t for t in backend.WEIGHT_ONLY_TILES if backend.weight_only_tile_fits(index, t)]
        for tiles in [small] if gemm else every:
            run = partial(backend.weight_only_linear, SCB=SCB, bias=bias, tiles=tiles)
            times["x".join(map(str, tiles))] = graph_time_us(cycling(run, CBs), x)
        for tile, splits in gemm_plans(index) if gemm else []:
            run = partial(backend.weight_only_linear, SCB=SCB, bias=bias, gemm=(tile, splits))
            times[gemm_label(tile, splits)] = graph_time_us(cycling(run, CBs), x)
        for plan in wgmma_plans(index) if gemm else []:
            run = partial(backend.weight_only_linear, SCB=SCB, bias=bias, wgmma=plan)
            times[wgmma_label(*plan)] = graph_time_us(cycling(run, CBs), x)
        for plan in tma_plans(index, m):
            run = partial(backend.weight_only_linear, SCB=SCB, bias=bias, tma=plan)
            times[tma_label(*plan)] = graph_time_us(cycling(run, CBs), x)
        tma = backend.weight_only_tma_plan(index, m, n, k)
        if tma is not None:
            picked = tma_label(*tma)
        elif backend.wgmma_serves(index, m, n):
            picked = wgmma_label(*backend.weight_only_wgmma_plan(index, m, n, k))
        elif m >= backend.WEIGHT_ONLY_GEMM_MIN_ROWS:
            picked = gemm_label(*backend.weight_only_gemm_plan(index, m, n, k))
        else:
            picked = "x".join(map(str, small))
        cells = [f"{fp16:.1f}", f"{int8:.1f}", picked, f"{times[picked]:.1f}"]
        lines.append(table_line(k, n, m, cells, times))
    return lines


def table_line(k: int, n: int, m: int, cells: list[str], times: dict[str, float]) -> str:
    """A table row (printed as it comes): the shape, `cells`, the best plan and every plan."""
    best = min(times, key=times.get)
    every = " ".join(f"{name} {t:.1f}" for name, t in sorted(times.items()))
    line = " | ".join([f"| {k}×{n}", str(m), *cells, best, f"{times[best]:.1f}", every]) + " |"
    print(line, flush=True)
    return line


def int8_row(k: int, n: int, rows) -> list[str]:
    """LLM.int8() (threshold 6, 6 planted outlier columns) under its cuBLAS, mma.sync GEMM and
    (sm_90) int8_wgmma.cu plans, weights cold in L2, beside fp16 and the plan the backend picks."""
    index = torch.cuda.current_device()
    *_, fp16_call, int8_call = cold_layer(k, n)
    wgmma = backend.uses_wgmma(index)
    chosen_plan = backend.plan
    lines = []
    for m in rows:
        x = planted_input(m, k)
        plans = {"cublas": backend.Plan("cublas", 32 if m <= 32 else 64)}
        plans |= {f"gemm{bm}": backend.Plan("gemm", bm, 1, 0) for bm in (64, 128)}
        for tokens, _ in backend.INT8_WGMMA_TOKEN_TILES if wgmma else []:
            for splits in backend.WGMMA_SPLITS:
                plans[wgmma_label(tokens, splits)] = backend.Plan("wgmma", tokens, splits)
        for rows, consumers, _ in backend.INT8_TOKENS_TILES if wgmma else []:
            tokens = 64 * consumers
            plans[tokens_label(tokens, rows)] = backend.Plan("wgmma", tokens, 1, 0, rows)
        picked = chosen_plan(index, m, n, k, cublas_ok=cublas_takes(n, k), wgmma_ok=wgmma)
        times = {}
        try:
            for name, plan in plans.items():
                if plan.kernel == "gemm":
                    k_tiles = -(-k // backend.K_TILE)
                    plan = plan._replace(split_size=k_tiles)
                backend.plan = lambda *a, _p=plan, **kw: _p
                backend._layouts.clear()
                times[name] = graph_time_us(int8_call, x)
        finally:
            backend.plan = chosen_plan
            backend._layouts.clear()
        fp16, picked_us = graph_time_us(fp16_call, x), graph_time_us(int8_call, x)
        if picked.kernel == "wgmma" and picked.weight_rows:
            label = tokens_label(picked.tile_rows, picked.weight_rows)
        elif picked.kernel == "wgmma":
            label = wgmma_label(picked.tile_rows, picked.splits)
        else:
            label = picked.kernel + (str(picked.tile_rows) if picked.kernel != "cublas" else "")
            label += f"/k{picked.splits}" if picked.splits > 1 else ""
        lines.append(table_line(k, n, m, [f"{fp16:.1f}", label, f"{picked_us:.1f}"], times))
    return lines


def int8_table(grid, rows) -> list[str]:
    lines = [f"{torch.cuda.get_device_name()}: µs per forward (graph-replayed, weights cold in "
             "L2), LLM.int8() at threshold 6, 6 planted outlier columns", ""]  # fmt: skip
    lines += ["| K×N | M | fp16 | picked | picked µs | best | best µs | all |", "|---" * 8 + "|"]
    print("\n".join(lines), flush=True)
    for k, n in grid:
        lines += int8_row(k, n, rows)
        torch.cuda.empty_cache()
    return lines


def weight_only_table(grid, rows) -> list[str]:
    lines = [f"{torch.cuda.get_device_name()}: µs per forward (graph-replayed, weights cold in "
             "L2), fp16", ""]  # fmt: skip
    lines += ["| K×N | M | fp16 | int8 t=6 | weight-only picked | picked µs | best | best µs "
              "| all |", "|---" * 9 + "|"]  # fmt: skip
    print("\n".join(lines), flush=True)
    for k, n in grid:
        lines += weight_only_row(k, n, rows)
        torch.cuda.empty_cache()
    return lines


def dependent_launch_table(grid, rows) -> list[str]:
    """The default forward ("auto") and LLM.int8() forced, weights cold in L2, launched in plain
    stream order and as programmatic dependents (llmint8.backends.driver), beside fp16."""
    from llmint8.backends import driver

    lines = [f"{torch.cuda.get_device_name()}: µs per forward (graph-replayed, {CALLS_PER_GRAPH} "
             "forwards per graph, weights cold in L2), threshold 6, 6 planted outlier columns; "
             "plain stream order -> programmatic dependent launch", ""]  # fmt: skip
    header = "| K×N | M | fp16 | auto | auto dependent | int8 | int8 dependent |"
    lines += [header, "|---" * 7 + "|"]
    print("\n".join(lines), flush=True)
    previous = driver.dependent_launch_enabled()
    try:
        for k, n in grid:
            SCB, bias, CBs, fp16_call, _ = cold_layer(k, n)
            for m in rows:
                x = planted_input(m, k)
                cells = [f"{graph_time_us(fp16_call, x):.1f}"]
                for arithmetic in ("auto", "int8"):
                    call = partial(llmint8.functional.int8_linear, SCB=SCB, bias=bias,
                                   threshold=6.0, arithmetic=arithmetic)  # fmt: skip
                    for dependent in (False, True):
                        driver.set_dependent_launch(dependent)
                        cells.append(f"{graph_time_us(cycling(call, CBs), x):.1f}")
                line = " | ".join([f"| {k}×{n}", str(m), *cells]) + " |"
                print(line, flush=True)
                lines.append(line)
            torch.cuda.empty_cache()
    finally:
        driver.set_dependent_launch(previous)
    return lines


def kernel_times_us(call, x, replays: int = 20) -> dict[str, float]:
    """GPU µs per forward of each kernel (and memset) `call` launches, from torch.profiler over
    graph replays of CALLS_PER_GRAPH forwards (in plain stream order: a programmatic dependent's
    time would include its wait for the kernel before it)."""
    from torch.profiler import ProfilerActivity, profile

    from llmint8.backends import driver

    previous = driver.dependent_launch_enabled()
    driver.set_dependent_launch(False)
    try:
        graph = captured(call, x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            for _ in range(replays):
                graph.replay()
            torch.cuda.synchronize()
    finally:
        driver.set_dependent_launch(previous)
    times: dict[str, float] = {}
    for event in profiler.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            name = event.name.split("(")[0].removeprefix("void ").split("<")[0].strip()
            times[name] = times.get(name, 0.0) + event.device_time_total
    return {name: t / (replays * CALLS_PER_GRAPH) for name, t in times.items()}


def breakdown_table(grid, rows) -> list[str]:
    """LLM.int8() forced with 6 planted outlier columns at threshold 6 and at threshold 0 (the
    same product without the outlier part), weights cold in L2: the graph-replayed µs per forward
    beside fp16, and each kernel's GPU µs per forward (in plain stream order)."""
    lines = [f"{torch.cuda.get_device_name()}: µs per forward (graph-replayed, {CALLS_PER_GRAPH} "
             "forwards per graph, weights cold in L2), LLM.int8() forced, 6 planted outlier "
             "columns; kernels' µs per forward in plain stream order", ""]  # fmt: skip
    lines += ["| K×N | M | fp16 | t=6 | t=6 kernels | t=0 | t=0 kernels |", "|---" * 7 + "|"]
    print("\n".join(lines), flush=True)
    for k, n in grid:
        SCB, bias, CBs, fp16_call, _ = cold_layer(k, n)
        for m in rows:
            x = planted_input(m, k)
            cells = [f"{graph_time_us(fp16_call, x):.1f}"]
            for threshold in (6.0, 0.0):
                call = cycling(partial(llmint8.functional.int8_linear, SCB=SCB, bias=bias,
                                       threshold=threshold, arithmetic="int8"), CBs)  # fmt: skip
                cells.append(f"{graph_time_us(call, x):.1f}")
                kernels = sorted(kernel_times_us(call, x).items(), key=lambda item: -item[1])
                cells.append(", ".join(f"{name} {t:.1f}" for name, t in kernels))
            line = " | ".join([f"| {k}×{n}", str(m), *cells]) + " |"
            print(line, flush=True)
            lines.append(line)
        torch.cuda.empty_cache()
    return lines


FIXED_COST_GRID = [(4096, n) for n in (2048, 4096, 8192, 11008, 16384, 28672)] + [
    (k, 4096) for k in (2048, 8192, 11008, 16384)
]
FIXED_COST_COLUMNS = ("fp16", "weight-only", "int8")


def fixed_cost_table(rows) -> list[str]:
    """Per weight of FIXED_COST_GRID and row count the graph-replayed µs of fp16 nn.Linear, the
    weight-only product (`weight_only_linear`, its plans as shipped) and, at the largest row
    count, LLM.int8() forced (weights cold in L2); then each one's fit t = a + bytes / rate over
    the weights (bytes: the int8 weight's, twice that for fp16)."""
    lines = [
        f"{torch.cuda.get_device_name()}: µs per forward (graph-replayed, weights cold in L2); "
        "weight-only: the weight-only product as planned; int8: LLM.int8() forced",
        "",
    ]
    lines += ["| K×N | M | " + " | ".join(FIXED_COST_COLUMNS) + " |", "|---" * 5 + "|"]
    print("\n".join(lines), flush=True)
    points: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for k, n in FIXED_COST_GRID:
        SCB, bias, CBs, fp16_call, int8_call = cold_layer(k, n)
        weight_only = cycling(partial(backend.weight_only_linear, SCB=SCB, bias=bias), CBs)
        for m in rows:
            x = planted_input(m, k)
            calls = {"fp16": fp16_call, "weight-only": weight_only}
            if m == max(rows):
                calls["int8"] = int8_call
            cells = {}
            for name, call in calls.items():
                cells[name] = graph_time_us(call, x)
                points.setdefault((name, m), []).append((k * n, cells[name]))
            times = [f"{cells[name]:.1f}" if name in cells else "—" for name in FIXED_COST_COLUMNS]
            line = " | ".join([f"| {k}×{n}", str(m), *times]) + " |"
            print(line, flush=True)
            lines.append(line)
        del SCB, bias, CBs, fp16_call, int8_call, weight_only
        torch.cuda.empty_cache()
    fits = ["", "Fit over the weights: t = a + bytes / rate", ""]
    fits += ["| forward | M | a µs | rate TB/s | largest residual µs |", "|---" * 5 + "|"]
    for (name, m), measured in points.items():
        scale = 2 if name == "fp16" else 1
        size = np.array([scale * elements for elements, _ in measured], dtype=float)
        t = np.array([time for _, time in measured])
        slope, a = np.polyfit(size, t, 1)
        residual = np.abs(t - (a + slope * size)).max()
        fits.append(f"| {name} | {m} | {a:.1f} | {1e-6 / slope:.2f} | {residual:.1f} |")
    print("\n".join(fits), flush=True)
    return lines + fits


def write_table(lines: list[str], out) -> None:
    """The table's lines into the file `out` (none: printed already)."""
    if out:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two shapes, four row counts")
    parser.add_argument("--weight-only", action="store_true", help="the weight-only kernel's tiles")
    parser.add_argument("--int8", action="store_true", help="LLM.int8()'s plans, weights cold")
    parser.add_argument(
        "--dependent-launch", action="store_true",
        help="the default and LLM.int8() forwards in stream order and as dependent launches",
    )  # fmt: skip
    parser.add_argument(
        "--breakdown", action="store_true",
        help="LLM.int8() at thresholds 6 and 0 with each kernel's time",
    )  # fmt: skip
    parser.add_argument(
        "--fixed-cost", action="store_true",
        help="each forward's fixed cost and streaming rate, fitted over weight sizes",
    )  # fmt: skip
    parser.add_argument("--rows", type=int, nargs="+", help="row counts M")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.fixed_cost:
        write_table(fixed_cost_table(args.rows or [1, 16, 64, 128]), args.out)
        return 0
    if args.weight_only or args.dependent_launch or args.int8 or args.breakdown:
        grid = GRID[::3] if args.quick else GRID
        if args.weight_only:
            rows = args.rows or ([1, 16, 64] if args.quick else WEIGHT_ONLY_ROWS)
            lines = weight_only_table(grid, rows)
        elif args.dependent_launch:
            lines = dependent_launch_table(grid, args.rows or [1, 16, 48, 128])
        elif args.breakdown:
            lines = breakdown_table(grid, args.rows or [16, 128])
        else:
            lines = int8_table(grid, args.rows or ([8, 32, 128, 512] if args.quick else ROWS[2:]))
        write_table(lines, args.out)
        return 0
    grid, rows = (GRID[::3], [1, 8, 32, 128]) if args.quick else (GRID, ROWS)
    rows = args.rows or rows
    index = torch.cuda.current_device()
    chosen_plan = backend.plan
    lines = [f"{torch.cuda.get_device_name()}: µs per forward (graph-replayed), threshold 6", ""]
    lines += ["| K×N | M | picked | picked µs | best | best µs | all |", "|---" * 7 + "|"]
    print("\n".join(lines), flush=True)
    for k, n in grid:
        layer = llmint8.nn.Linear8bitLt(
            k, n, has_fp16_weights=False, threshold=6.0, arithmetic="int8"
        ).cuda()
        for m in rows:
            x = planted_input(m, k)
            picked = chosen_plan(
                index, m, n, k, cublas_ok=cublas_takes(n, k), wgmma_ok=backend.uses_wgmma(index)
            )  # fmt: skip
            times = {}
            try:
                for name, plan in candidates(index, m, n, k).items():
                    backend.plan = lambda *a, _p=plan, **kw: _p
                    backend._layouts.clear()
                    times[name] = graph_time_us(layer, x)
                backend.plan = chosen_plan
                backend._layouts.clear()
                picked_us = graph_time_us(layer, x)
            finally:
                backend.plan = chosen_plan
                backend._layouts.clear()
            best = min(times, key=times.get)
            label = picked.kernel + (str(picked.tile_rows) if picked.kernel == "gemm" else "")
            label += f"/k{picked.splits}" if picked.splits > 1 else ""
            ranked = sorted(times.items(), key=lambda item: item[1])
            every = " ".join(f"{name} {t:.1f}" for name, t in ranked)
            line = (f"| {k}×{n} | {m} | {label} | {picked_us:.1f} | {best} | {times[best]:.1f} "
                    f"| {every} |")  # fmt: skip
            print(line, flush=True)
            lines.append(line)
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
