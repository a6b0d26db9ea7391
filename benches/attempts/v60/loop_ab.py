"""`python benches/attempts/v60/loop_ab.py ROWS SHAPES` (with persistent-pair.patch applied):
int8_wgmma.cu's 256-token pair tile (v58-v59) against its persistent form
(int8_wgmma_pair_loop, `LLMINT8_PAIR_LOOP`), graph-replayed (10 forwards a graph) at threshold 6
with benches' 6 planted outlier columns (the default forward and forced LLM.int8()) and at
threshold 0, two rounds each, fp16 F.linear beside; the largest difference of the two outputs.
ROWS: 512,2048,4096; SHAPES: 4096x4096,8192x28672 (K x N)."""

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
    line, outs = f"{k}x{n} m={m}: fp16 {fp16:.1f}", {}
    for loop in (False, True, False, True):
        cb._PAIR_LOOP = loop
        cb._layouts.clear()
        forward = partial(F.int8_linear, x, CB, SCB, bias)
        t6 = graph_us(partial(forward, threshold=6.0))
        forced = graph_us(partial(forward, threshold=6.0, arithmetic="int8"))
        t0 = graph_us(partial(forward, threshold=0.0))
        outs[loop] = forward(threshold=6.0).float()
        name = "loop" if loop else "pair"
        line += f" | {name} t6 {t6:.1f} int8 {forced:.1f} t0 {t0:.1f}"
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
