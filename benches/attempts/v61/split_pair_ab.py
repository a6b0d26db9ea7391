"""`python benches/attempts/v61/split_pair_ab.py ROWS SHAPES` (with split-pairs.patch applied):
int8_wgmma.cu's split-K plans with and without pairs of weight tiles sharing the tokens' box
(`LLMINT8_SPLIT_PAIR`), graph-replayed (10 forwards a graph) at threshold 6 with benches' 6 planted
outlier columns: the default forward and forced LLM.int8(), two rounds each, fp16 F.linear beside,
the plan each call takes printed; the largest difference of the two outputs (forced).
ROWS: 32,64,128; SHAPES: 4096x4096,11008x4096 (K x N)."""

import sys
from functools import partial

import torch
import torch.nn.functional as TF

from llmint8 import functional as F
from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us, planted

rows = [int(r) for r in sys.argv[1].split(",")]
shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[2].split(",")]
torch.manual_seed(0)


def point(k: int, n: int, m: int, w, CB, SCB, bias) -> str:
    x = planted(m, k, "cuda", torch.float16)
    fp16 = graph_us(partial(TF.linear, x, w, bias))
    plan = cb.plan(0, m, n, k, cublas_ok=True, wgmma_ok=True)
    line, outs = f"{k}x{n} m={m} {plan}: fp16 {fp16:.1f}", {}
    for paired in (False, True, False, True):
        cb._SPLIT_PAIR = paired
        cb._layouts.clear()
        forward = partial(F.int8_linear, x, CB, SCB, bias, threshold=6.0)
        default = graph_us(forward)
        forced = graph_us(partial(forward, arithmetic="int8"))
        outs[paired] = forward(arithmetic="int8").float()
        line += f" | {'pairs' if paired else 'split'} default {default:.1f} int8 {forced:.1f}"
    diff = (outs[True] - outs[False]).abs().max().item()
    return f"{line} | diff {diff:.3g}"


for k, n in shapes:
    w = torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02
    CB, SCB = F.quantize_weight(w)
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    for m in rows:
        print(point(k, n, m, w, CB, SCB, bias), flush=True)
    del w, CB, SCB
    torch.cuda.empty_cache()
