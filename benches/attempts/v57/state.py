"""`python benches/attempts/v57/state.py`: the default forward of the decode shapes graph-replayed
in a process before any cuBLAS call, then after one fp16 nn.Linear call of 4096x4096 at 32 rows
(which left 4096x4096 at 32 rows 10.2 -> 11.9 us in order.py / trigger.py), then after a
carveout hint of 25% on every loaded weight-only kernel."""

import functools

import torch

from llmint8 import functional as F
from llmint8.tools.bench import graph_us

torch.manual_seed(0)
POINTS = {(4096, 4096): (1, 16, 32, 64), (4096, 11008): (1, 16), (11008, 4096): (1, 16, 32)}
layers = {}
for (k, n), rows in POINTS.items():
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    CB, SCB = F.quantize_weight(w)
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    for m in rows:
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        layers[(k, n, m)] = (x, CB, SCB, bias)


def readings(label):
    line = []
    for (k, n, m), (x, CB, SCB, bias) in layers.items():
        forward = functools.partial(F.int8_linear, x, CB, SCB, bias, 6.0, arithmetic="auto")
        us = graph_us(forward)
        line.append(f"{k}x{n}@{m} {us:.1f}")
    print(label, " | ".join(line), flush=True)


readings("fresh:      ")
readings("fresh again:")
layer = torch.nn.Linear(4096, 4096, device="cuda", dtype=torch.float16)
layer(torch.randn(32, 4096, device="cuda", dtype=torch.float16))
torch.cuda.synchronize()
readings("after fp16: ")
readings("again:      ")
