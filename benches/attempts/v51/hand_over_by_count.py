"""Graph-replayed µs per "auto" forward by outlier count C, the hand-over off and on in one
process (`python benches/attempts/v51/hand_over_by_count.py [C,C,...]`; fp16 `nn.Linear` beside)."""

import functools
import sys

import torch

from llmint8 import functional as F
from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us

torch.manual_seed(0)
SHAPES = [(4096, 11008), (8192, 28672)]
ROWS = [32, 64, 128]
CS = [0, 6, 64, 65, 128, 129, 256, 512, 2048]
if len(sys.argv) > 1:
    CS = [int(c) for c in sys.argv[1].split(",")]


def auto_forward(x, CB, SCB, bias):
    return F.int8_linear(x, CB, SCB, bias, threshold=6.0, arithmetic="auto")


for k, n in SHAPES:
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    CB, SCB = F.quantize_weight(w)
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    del w
    wt = (CB.double() * (SCB.double()[:, None] / 127)).float()
    for m in ROWS:
        x0 = torch.randn(m, k, device="cuda", dtype=torch.float16)
        w16 = wt.half()
        t_fp = graph_us(functools.partial(torch.nn.functional.linear, x0, w16, bias))
        del w16
        row = [f"fp16 {t_fp:.1f}"]
        for c in CS:
            x = x0.clone()
            cols = torch.randperm(k, device="cuda")[:c]
            x[:, cols] *= 40.0
            out = {}
            for on in (False, True):
                cb._HAND_OVER = on
                out[on] = graph_us(functools.partial(auto_forward, x, CB, SCB, bias))
            cb._HAND_OVER = True
            y = F.int8_linear(x, CB, SCB, bias, threshold=6.0, arithmetic="auto").double()
            ref = x.double() @ wt.double().t() + bias.double()
            err = ((y - ref).abs().mean() / ref.abs().mean()).item()
            row.append(f"C={c}: {out[False]:.1f}->{out[True]:.1f} (err {err:.4f})")
        print(f"{k}x{n} m={m} | " + " | ".join(row), flush=True)
