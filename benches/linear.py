"""Layer benchmark: fp16 nn.Linear vs bitsandbytes Linear8bitLt vs cuBLAS int8 (through CuPy) vs
llmint8 Linear8bitLt at threshold 0 and 6, eager and replayed from a CUDA graph.

    python benches/linear.py [--quick] [--out results.md [--plot chart.png]]

Times are medians of CUDA-event timings after warm-up (µs per call). Inputs carry 6 planted
outlier feature columns (x20), the case LLM.int8() exists for; the error column is
||y - y_fp16|| / ||y_fp16||. `floor%` is, for M <= 16, the int8 weight bytes over the measured
device copy bandwidth divided by llmint8's time at threshold 6 (graph-replayed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial

import numpy as np
import torch
from torch import nn

import llmint8

GRID = [(4096, 4096), (4096, 11008), (11008, 4096), (8192, 28672)]
ROWS = [1, 8, 32, 128, 512, 2048, 4096]


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


def ours(linear, threshold):
    layer = llmint8.nn.Linear8bitLt(
        linear.in_features, linear.out_features, has_fp16_weights=False, threshold=threshold
    )
    layer.load_state_dict(linear.state_dict())
    return layer.cuda()


def rel_error(y, reference):
    return ((y.float() - reference.float()).norm() / reference.float().norm()).item()


def bench_point(layers, m, k, n, bandwidth):
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    x[:, torch.randperm(k)[:6]] *= 20
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
        g_fp16, g_bnb0, g_o6 = graph("fp16"), graph("bnb0"), graph("ours6")
        e_bnb, e_o0, e_o6 = error("bnb6"), error("ours0"), error("ours6")
    floor = f"{100 * (n * k / bandwidth * 1e6) / g_o6:.0f}" if m <= 16 else ""
    return (
        f"| {k}×{n} | {m} | {t_fp16:.1f} | {t_bnb:.1f} | {t_cublas:.1f} | {t_o0:.1f} | "
        f"{t_o6:.1f} | {t_fp16 / t_o6:.2f}× | {t_bnb / t_o6:.1f}× | {g_fp16:.1f} | "
        f"{g_bnb0:.1f} | {g_o6:.1f} | {g_fp16 / g_o6:.2f}× | {e_bnb:.4f} | {e_o0:.4f} | "
        f"{e_o6:.4f} | {floor} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two layers, fewer M")
    parser.add_argument("--out", default=None, help="also write the table (markdown) here")
    parser.add_argument(
        "--plot", default=None, help="with --out: also write a speed-up chart (PNG)"
    )
    args = parser.parse_args(argv)
    grid = GRID[::3] if args.quick else GRID
    rows = [1, 16, 128, 4096] if args.quick else ROWS
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    device = torch.cuda.get_device_name()
    header = (
        "| K×N | M | fp16 | bnb t=6 | cuBLAS i8 | ours t=0 | ours t=6 | vs fp16 | vs bnb | "
        "fp16 graph | bnb t=0 graph | ours t=6 graph | graph vs fp16 | err bnb | err t=0 | "
        "err t=6 | floor% |"
    )
    lines = [
        f"{device}; copy bandwidth {bandwidth / 1e12:.2f} TB/s; µs per call (median)",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    print("\n".join(lines), flush=True)
    for k, n in grid:
        linear = nn.Linear(k, n).half().cuda()
        layers = {
            "fp16": linear,
            "ours0": ours(linear, 0.0),
            "ours6": ours(linear, 6.0),
            "bnb6": bnb_layer(linear, 6.0),
            "bnb0": bnb_layer(linear, 0.0),
        }
        for m in rows:
            row = bench_point(layers, m, k, n, bandwidth)
            lines.append(row)
            print(row, flush=True)
        del linear, layers
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        if args.plot:
            from plot import plot  # benches/plot.py, beside this script

            plot(args.out, args.plot)


if __name__ == "__main__":
    main()
