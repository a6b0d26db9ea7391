"""`python benches/attempts/v57/timeline.py [SHAPES] [ROWS]`: where one graph-replayed forward's
time goes, kernel by kernel, with programmatic dependent launch on (as shipped).

For each layer (KxN, comma-separated; default the decode issue's four), row count and mode (the
default forward, LLM.int8() forced, the default with the hand-over off, and the default again:
its first and later readings can differ, NOTES v57), a graph of 10
forwards of one layer (weights warm, as `benches/linear.py`'s graph columns) is replayed under
torch.profiler. Each kernel's start and end are printed relative to the start of its forward's
first kernel (median over the middle forwards of every replay), then the forward's period (first
kernel to the next forward's first kernel). A dependent's start is when its first block started
(it may then wait for the kernel before it); its end is what the stream waits for."""

import collections
import functools
import statistics
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from llmint8 import functional as F
from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us

torch.manual_seed(0)
SHAPES = sys.argv[1] if len(sys.argv) > 1 else "4096x4096,4096x11008,11008x4096,8192x28672"
ROWS = [int(r) for r in (sys.argv[2] if len(sys.argv) > 2 else "32,64,128").split(",")]
CALLS, REPLAYS = 10, 20


def short(name: str) -> str:
    return name.split("(")[0].removeprefix("void ").split("<")[0].strip()


def timeline(fn) -> tuple[list[tuple[str, float, float]], float]:
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(CALLS):
            fn()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(REPLAYS):
            graph.replay()
        torch.cuda.synchronize()
    events = [
        (e.time_range.start, e.time_range.end, short(e.name))
        for e in prof.events()
        if e.device_type == torch.autograd.DeviceType.CUDA
    ]
    # Kernels of every forward only (not the mask's zeroing, once per graph).
    counts = collections.Counter(name for _, _, name in events)
    events = sorted(e for e in events if counts[e[2]] % (REPLAYS * CALLS) == 0)
    per_call = len(events) // (REPLAYS * CALLS)
    if per_call == 0 or len(events) % (REPLAYS * CALLS):
        return [(f"? {len(events)} events", 0.0, 0.0)], float("nan")
    rel: list[list[tuple[float, float]]] = [[] for _ in range(per_call)]
    periods = []
    names = [events[i][2] for i in range(per_call)]
    for r in range(REPLAYS):
        base = r * CALLS * per_call
        for c in range(2, CALLS - 2):  # the middle forwards of the replay
            first = events[base + c * per_call][0]
            for i in range(per_call):
                s, e, _ = events[base + c * per_call + i]
                rel[i].append((s - first, e - first))
            periods.append(events[base + (c + 1) * per_call][0] - first)
    rows = [
        (names[i], statistics.median(s for s, _ in rel[i]), statistics.median(e for _, e in rel[i]))
        for i in range(per_call)
    ]
    return rows, statistics.median(periods)


for shape in SHAPES.split(","):
    k, n = (int(v) for v in shape.split("x"))
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    CB, SCB = F.quantize_weight(w)
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    layer = torch.nn.Linear(k, n, device="cuda", dtype=torch.float16)
    del w
    for m in ROWS:
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        x[:, torch.randperm(k, device="cuda")[:6]] *= 20.0
        modes = {
            "fp16": functools.partial(layer, x),
            "default": functools.partial(F.int8_linear, x, CB, SCB, bias, 6.0, arithmetic="auto"),
            "int8": functools.partial(F.int8_linear, x, CB, SCB, bias, 6.0, arithmetic="int8"),
        }
        extra = [("default, no hand-over", modes["default"]), ("default again", modes["default"])]
        for mode, fn in list(modes.items()) + extra:
            cb._HAND_OVER = mode != "default, no hand-over"
            us = graph_us(fn)
            rows, period = timeline(fn)
            parts = "  ".join(f"{name} {s:.1f}-{e:.1f}" for name, s, e in rows)
            print(f"{shape} m={m} {mode}: graph {us:.1f} us, period {period:.1f} | {parts}",
                  flush=True)  # fmt: skip
        cb._HAND_OVER = True
