"""`python benches/attempts/v52/weight_only_ab.py LABEL ROWS SHAPES [fp16]`: the default forward
("auto": weight-only at these rows) graph-replayed, warm (one weight, 10 calls per graph) and cold
(10 copies of the weight, one per call), twice each, with fp16 F.linear beside when a fourth
argument is given. ROWS: 1,8,16; SHAPES: 4096x4096,8192x28672 (K x N). `RING2=1,2,1,1,4` replaces
the ring tile of two token tiles (NOTES v52). Run once per kernel variant (variants.sh)."""

import os
import sys
from functools import partial

import torch
import torch.nn.functional as TF

from llmint8 import functional as F
from llmint8.tools.bench import median_us

label = sys.argv[1]
rows = [int(r) for r in sys.argv[2].split(",")]
shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[3].split(",")]
fp16 = len(sys.argv) > 4
torch.manual_seed(0)
if os.environ.get("RING2"):
    from llmint8.backends import cuda as cb

    cb.WEIGHT_ONLY_RING_TILES[2] = tuple(int(v) for v in os.environ["RING2"].split(","))
    print("ring", cb.WEIGHT_ONLY_RING_TILES)


def replay_us(fns):
    for f in fns:
        f()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    return median_us(g.replay, warmup=3, reps=30) / len(fns)


def auto_forward(x, CB, SCB, bias):
    return F.int8_linear(x, CB, SCB, bias, threshold=6.0, arithmetic="auto")


for k, n in shapes:
    copies = 10
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    CB, SCB = F.quantize_weight(w)
    CBs = [CB.clone() for _ in range(copies)]
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    ws = [w.clone() for _ in range(copies)] if fp16 else []
    for m in rows:
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        warm = [partial(auto_forward, x, CB, SCB, bias)] * copies
        cold = [partial(auto_forward, x, c, SCB, bias) for c in CBs]
        res = [replay_us(warm), replay_us(cold), replay_us(warm), replay_us(cold)]
        line = f"{label} {k}x{n} m={m}: warm {res[0]:.1f}/{res[2]:.1f}"
        line += f" cold {res[1]:.1f}/{res[3]:.1f}"
        if fp16:
            fw = replay_us([partial(TF.linear, x, w, bias)] * copies)
            fc = replay_us([partial(TF.linear, x, wi, bias) for wi in ws])
            line += f" | fp16 warm {fw:.1f} cold {fc:.1f}"
        print(line, flush=True)
    del ws, CBs
    torch.cuda.empty_cache()
