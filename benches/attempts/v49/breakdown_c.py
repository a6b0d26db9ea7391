"""Forced LLM.int8() by outlier count C: each kernel's GPU µs per forward (torch.profiler over
graph replays in plain stream order, `benches/kernel_choice.py`'s `kernel_times_us`) beside the
graph-replayed forward (best of three). NOTES v49.
usage, from the repository root: python benches/attempts/v49/breakdown_c.py
SHAPES="4096x11008,4096x4096" (K x N), ROWS="32,128", CS="0,6,16,32,64" select the points."""

import os
import sys
from functools import partial

import torch
from torch import nn

sys.path.insert(0, "benches")
from kernel_choice import kernel_times_us

from llmint8.tools.bench import graph_us, ours
from llmint8.tools.bench_outliers import inputs_with_outliers


def points(name: str, default: str) -> list[str]:
    return os.environ.get(name, default).split(",")


for shape in points("SHAPES", "4096x11008,4096x4096"):
    k, n = (int(v) for v in shape.split("x"))
    generator = torch.Generator().manual_seed(0)
    layer = ours(nn.Linear(k, n).cuda().half(), 6.0, "cuda", arithmetic="int8")
    for m in (int(r) for r in points("ROWS", "32,128")):
        for c in (int(c) for c in points("CS", "0,6,16,32,64")):
            x = inputs_with_outliers(m, k, c, "cuda", torch.float16, generator)
            with torch.no_grad():
                graph = min(graph_us(partial(layer, x)) for _ in range(3))
                kernels = kernel_times_us(layer, x)
            parts = ", ".join(
                f"{name} {t:.1f}" for name, t in sorted(kernels.items(), key=lambda i: -i[1])
            )
            print(f"{k}x{n} m={m} C={c}: graph {graph:.1f} | {parts}", flush=True)
