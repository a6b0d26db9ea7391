"""`python benches/attempts/v53/weight_only_ab.py LABEL ROWS SHAPES [fp16]`: the default forward
("auto": weight-only at these rows) graph-replayed, warm (one weight, 10 calls per graph) and cold
(10 copies of the weight, one per call), twice each, with fp16 F.linear beside when a fourth
argument is given. ROWS: 17,24,32; SHAPES: 4096x4096,2048x4096 (K x N). With
four-token-ring.patch applied, `RING4=off` drops the ring tile of four token tiles from the plan
and `RING4=2,4,1,1,3` puts another in its place; on main `LONG=off` drops the 16-warp ring tile
(the plan before NOTES v53). The weight-only tile each shape and row count would run is printed
(other kernels serve some shapes: see weight_only_tma_plan and wgmma_serves)."""

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
from llmint8.backends import cuda as cb  # noqa: E402

if os.environ.get("RING4") == "off":
    del cb.WEIGHT_ONLY_RING_TILES[4]
elif os.environ.get("RING4"):
    cb.WEIGHT_ONLY_RING_TILES[4] = tuple(int(v) for v in os.environ["RING4"].split(","))
if os.environ.get("LONG") == "off":
    cb.WEIGHT_ONLY_LONG_RING_TILES.clear()
print(
    "rings", cb.WEIGHT_ONLY_RING_TILES, getattr(cb, "WEIGHT_ONLY_LONG_RING_TILES", {}), flush=True
)


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
        tile = (
            cb.weight_only_tiles(0, m, n, k=k)
            if hasattr(cb, "WEIGHT_ONLY_LONG_K")
            else cb.weight_only_tiles(0, m, n)
        )
        line = f"{label} {k}x{n} m={m} {'x'.join(map(str, tile))}: warm {res[0]:.1f}/{res[2]:.1f}"
        line += f" cold {res[1]:.1f}/{res[3]:.1f}"
        if fp16:
            fw = replay_us([partial(TF.linear, x, w, bias)] * copies)
            fc = replay_us([partial(TF.linear, x, wi, bias) for wi in ws])
            line += f" | fp16 warm {fw:.1f} cold {fc:.1f}"
        print(line, flush=True)
    del ws, CBs
    torch.cuda.empty_cache()
