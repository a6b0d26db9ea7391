"""`llmint8 bench`, the layer benchmark. On a GPU: fp16 nn.Linear vs bitsandbytes Linear8bitLt
(where installed) vs cuBLAS int8 (through CuPy) vs llmint8 Linear8bitLt at threshold 0 and 6,
eager and replayed from a CUDA graph. `ours t=6` is the default layer (``arithmetic="auto"``:
weight-only int8 for few rows, LLM.int8() else); `int8 t=6` and `ours t=0` force LLM.int8().
On the CPU: fp32 nn.Linear vs llmint8 at thresholds 0 and 6.

    llmint8 bench [--quick] [--shapes KxN ...] [--rows M ...] [--device cuda:0] [--out results.md]
        [--plot chart.png]
    python benches/linear.py ...   (the same)

Times are medians after warm-up (µs per call; CUDA events on a GPU, the host clock on the CPU).
Inputs carry 6 planted outlier feature columns (x20), the case LLM.int8() exists for; the error
columns are ||y - y_fp|| / ||y_fp||. `floor%` is, for M <= 16, the int8 weight bytes over the
measured device copy bandwidth divided by llmint8's time at threshold 6 (graph-replayed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial

import numpy as np
import torch
from torch import nn

import llmint8

GRID = [(4096, 4096), (4096, 11008), (11008, 4096), (8192, 28672)]
ROWS = [1, 8, 32, 128, 512, 2048, 4096]
CPU_GRID = [(1024, 1024), (1024, 4096), (4096, 1024), (4096, 4096), (4096, 11008), (11008, 4096)]
CPU_ROWS = [1, 8, 32, 128, 512]


def median_us(fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return statistics.median(times)


def graph_us(fn, reps=30):
    """Median time of one call replayed from a CUDA graph (10 calls captured per graph)."""
    try:
        fn()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(10):
                fn()
        return median_us(graph.replay, warmup=3, reps=reps) / 10
    except Exception as err:  # reported as nan, with the reason on stderr
        print(f"graph capture failed: {type(err).__name__}: {err}", file=sys.stderr)
        return float("nan")


def copy_bandwidth():
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / (median_us(lambda: dst.copy_(src)) * 1e-6)


class CublasInt8:
    """The bare int8 GEMM of cuBLAS (gemmEx, CUDA_R_8I in, CUBLAS_COMPUTE_32I) through CuPy."""

    def __init__(self, m, k, n):
        import cupy
        from cupy_backends.cuda.libs import cublas

        self.cupy, self.cublas = cupy, cublas
        self.a = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
        self.b = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda")
        self.c = torch.empty((m, n), dtype=torch.int32, device="cuda")
        self.alpha, self.beta = np.array(1, np.int32), np.array(0, np.int32)
        self.m, self.k, self.n = m, k, n
        self.handle = cupy.cuda.device.get_cublas_handle()

    def __call__(self):
        self.cublas.setStream(self.handle, torch.cuda.current_stream().cuda_stream)
        self.cublas.gemmEx(
            self.handle,
            1,
            0,
            self.n,
            self.m,
            self.k,
            self.alpha.ctypes.data,
            self.b.data_ptr(),
            3,
            self.k,
            self.a.data_ptr(),
            3,
            self.k,
            self.beta.ctypes.data,
            self.c.data_ptr(),
            10,
            self.n,
            72,
            -1,
        )


def bnb_layer(linear, threshold):
    try:
        import bitsandbytes as bnb
    except ImportError:
        return None
    layer = bnb.nn.Linear8bitLt(
        linear.in_features,
        linear.out_features,
        bias=True,
        has_fp16_weights=False,
        threshold=threshold,
    )
    layer.load_state_dict(linear.state_dict())
    return layer.cuda()


def ours(linear, threshold, device="cuda", arithmetic="auto"):
    layer = llmint8.nn.Linear8bitLt(
        linear.in_features,
        linear.out_features,
        has_fp16_weights=False,
        threshold=threshold,
        arithmetic=arithmetic,
    )
    layer.load_state_dict(linear.state_dict())
    return layer.to(device)


def rel_error(y, reference):
    return ((y.float() - reference.float()).norm() / reference.float().norm()).item()


def planted(m, k, device, dtype):
    x = torch.randn(m, k, device=device, dtype=dtype)
    x[:, torch.randperm(k)[:6]] *= 20
    return x


def bench_point(layers, m, k, n, bandwidth):
    x = planted(m, k, "cuda", torch.float16)
    nan = float("nan")

    def eager(name):
        return median_us(partial(layers[name], x)) if layers[name] is not None else nan

    def graph(name):
        return graph_us(partial(layers[name], x)) if layers[name] is not None else nan

    def error(name):
        return rel_error(layers[name](x), reference) if layers[name] is not None else nan

    with torch.no_grad():
        reference = layers["fp16"](x)
        t_fp16, t_o0, t_o6, t_bnb = eager("fp16"), eager("ours0"), eager("ours6"), eager("bnb6")
        t_cublas = median_us(CublasInt8(m, k, n))
        g_fp16, g_bnb0, g_o6, g_i6 = graph("fp16"), graph("bnb0"), graph("ours6"), graph("int8_6")
        e_bnb, e_o0, e_o6, e_i6 = error("bnb6"), error("ours0"), error("ours6"), error("int8_6")
    floor = f"{100 * (n * k / bandwidth * 1e6) / g_o6:.0f}" if m <= 16 else ""
    return (
        f"| {k}×{n} | {m} | {t_fp16:.1f} | {t_bnb:.1f} | {t_cublas:.1f} | {t_o0:.1f} | "
        f"{t_o6:.1f} | {t_fp16 / t_o6:.2f}× | {t_bnb / t_o6:.1f}× | {g_fp16:.1f} | "
        f"{g_bnb0:.1f} | {g_i6:.1f} | {g_o6:.1f} | {g_fp16 / g_o6:.2f}× | {e_bnb:.4f} | "
        f"{e_o0:.4f} | {e_i6:.4f} | {e_o6:.4f} | {floor} |"
    )


def host_median_us(fn, warmup=3, reps=15):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def _table(title, header, rows_fn, grid):
    lines = [title, "", header, "|" + "---|" * (header.count("|") - 1)]
    print("\n".join(lines), flush=True)
    for shape in grid:
        for row in rows_fn(*shape):
            lines.append(row)
            print(row, flush=True)
    return lines


def gpu_table(device, quick, rows=None, shapes=None):
    grid = shapes or (GRID[::3] if quick else GRID)
    rows = rows or ([1, 16, 128, 4096] if quick else ROWS)
    with torch.cuda.device(device):
        bandwidth = copy_bandwidth()
        title = (
            f"{torch.cuda.get_device_name()}; copy bandwidth {bandwidth / 1e12:.2f} TB/s; "
            "µs per call (median)"
        )
        header = (
            "| K×N | M | fp16 | bnb t=6 | cuBLAS i8 | ours t=0 | ours t=6 | vs fp16 | vs bnb | "
            "fp16 graph | bnb t=0 graph | int8 t=6 graph | ours t=6 graph | graph vs fp16 | "
            "err bnb | err t=0 | err int8 t=6 | err t=6 | floor% |"
        )

        def rows_for(k, n):
            linear = nn.Linear(k, n).half().cuda()
            layers = {
                "fp16": linear,
                "ours0": ours(linear, 0.0, arithmetic="int8"),
                "ours6": ours(linear, 6.0),
                "int8_6": ours(linear, 6.0, arithmetic="int8"),
                "bnb6": bnb_layer(linear, 6.0),
                "bnb0": bnb_layer(linear, 0.0),
            }
            for m in rows:
                yield bench_point(layers, m, k, n, bandwidth)
            del linear, layers
            torch.cuda.empty_cache()

        return _table(title, header, rows_for, grid)


def interleaved_us(fns, min_rounds=9, max_rounds=80, tolerance=0.03, budget_s=4.0):
    """Times `fns` on the host in interleaved rounds (each once per round, the order rotating),
    so that a slow spell of the machine hits all of them alike, until the median of the
    per-round ratio ``fns[0] / fns[-1]`` is stable: its interquartile range within
    `tolerance` of it (after `min_rounds`), or `max_rounds` / `budget_s` reached. Each sample
    repeats its call until it lasts >= 2 ms. Returns (median µs per call of each fn, (p25,
    median, p75) of the ratio, rounds)."""
    for fn in fns:
        fn()  # warm-up
    repeats = []
    for fn in fns:
        start = time.perf_counter()
        fn()
        repeats.append(max(1, int(2e-3 / max(time.perf_counter() - start, 1e-7))))
    samples = [[] for _ in fns]
    ratios: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(ratios) < max_rounds:
        order = list(range(len(fns)))
        shift = len(ratios) % len(fns)
        for i in order[shift:] + order[:shift]:
            start = time.perf_counter()
            for _ in range(repeats[i]):
                fns[i]()
            samples[i].append((time.perf_counter() - start) * 1e6 / repeats[i])
        ratios.append(samples[0][-1] / samples[-1][-1])
        if len(ratios) >= min_rounds:
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            if (q3 - q1) <= tolerance * q2 or time.perf_counter() > deadline:
                break
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return [statistics.median(s) for s in samples], (q1, statistics.median(ratios), q3), len(ratios)


def cpu_table(quick, rows=None, shapes=None):
    grid = shapes or (CPU_GRID[:1] if quick else CPU_GRID)
    rows = rows or ([1, 16] if quick else CPU_ROWS)
    title = (
        f"CPU ({torch.get_num_threads()} threads); µs per call (median). fp32: nn.Linear in fp32; "
        "ours t=0 / t=6: llmint8 at threshold 0 / 6 (int8 weights, int32 accumulation); vs fp32: "
        "fp32 time over ours t=6 time (above 1: faster), the median of the ratio over interleaved "
        "rounds, repeated until stable; spread: its 25th-75th percentiles; err: relative error "
        "against the fp32 output"
    )
    header = (
        "| K×N | M | fp32 | ours t=0 | ours t=6 | vs fp32 | spread | rounds | err t=0 | err t=6 |"
    )

    def rows_for(k, n):
        linear = nn.Linear(k, n)
        zero, six = ours(linear, 0.0, "cpu"), ours(linear, 6.0, "cpu")
        for m in rows:
            x = planted(m, k, "cpu", torch.float32)
            with torch.no_grad():
                reference = linear(x)
                (t32, t0, t6), (low, ratio, high), rounds = interleaved_us(
                    [partial(f, x) for f in (linear, zero, six)]
                )
                e0, e6 = rel_error(zero(x), reference), rel_error(six(x), reference)
            yield (
                f"| {k}×{n} | {m} | {t32:.1f} | {t0:.1f} | {t6:.1f} | {ratio:.2f}× | "
                f"{low:.2f}–{high:.2f} | {rounds} | {e0:.4f} | {e6:.4f} |"
            )

    return _table(title, header, rows_for, grid)


def run_bench(
    device=None, quick=False, out=None, plot=None, outliers=False, rows=None, shapes=None
) -> str:
    """`llmint8 bench`: runs the layer grid on `device` (default: the first GPU, else the CPU;
    `quick`: a small grid; `rows`: these row counts M instead of the grid's; `shapes`: these (K,
    N) weight shapes instead of the grid's), prints each row as it is measured and returns the
    markdown table; `out` also writes it, `plot` writes the speed-up chart (PNG). `outliers`:
    instead, the sweep over the number of outlier columns (`llmint8.tools.bench_outliers`), at
    `rows` and `shapes` where given."""
    torch.manual_seed(0)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if outliers:
        from .bench_outliers import outlier_sweep_table

        lines = outlier_sweep_table(device, quick, rows, shapes)
    elif device.type == "cuda":
        lines = gpu_table(device, quick, rows, shapes)
    else:
        lines = cpu_table(quick, rows, shapes)
    table = "\n".join(lines) + "\n"
    if out:
        from .outputs import write_atomically

        write_atomically(out, lambda path: path.write_text(table))
    if plot:
        from .plots import plot_speedup

        plot_speedup(table, plot)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid")
    parser.add_argument("--device", default=None, help="cuda[:N] or cpu (default: cuda if any)")
    parser.add_argument("--out", default=None, help="also write the table (markdown) here")
    parser.add_argument("--plot", default=None, help="also write a speed-up chart (PNG)")
    parser.add_argument("--outliers", action="store_true", help="the outlier-column sweep")
    parser.add_argument("--rows", type=row_count, nargs="+", help="row counts M (the grid's)")
    parser.add_argument(
        "--shapes", type=weight_shape, nargs="+", help="weight shapes KxN (the grid's)"
    )
    args = parser.parse_args(argv)
    run_bench(args.device, args.quick, args.out, args.plot, args.outliers, args.rows, args.shapes)


def weight_shape(text: str) -> tuple[int, int]:
    """An argparse type: a weight shape KxN (in features by out features, whole numbers of at
    least 1), as the tables print it (x or ×)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(
            f"must be KxN (in by out features, e.g. 4096x11008), got {text!r}"
        )
    return int(parts[0]), int(parts[1])


def row_count(text: str) -> int:
    """An argparse type: a row count M (a whole number, at least 1)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


if __name__ == "__main__":
    main()
