"""`python benches/attempts/v53/warps_probe.py LABEL ROWS SHAPES TILES [fp16]`: the
weight-only kernel forced to each tile of TILES (`2,2,1,1,4/2,2,1,1,0`), graph-replayed, warm
(one weight, 10 calls per graph) and cold (10 copies), twice each, with its largest error against
the float64 product. With WARPS=16 the installed kernel source is taken to have been edited to
512 threads per block (variants.sh does it): the launch width, the ring's size and the
instantiations of TILES are set to match here (NOTES v53)."""

import os
import sys
from functools import partial

import torch
import torch.nn.functional as TF

from llmint8 import functional as F
from llmint8.backends import cuda as cb
from llmint8.backends import cuda_kernels as ck
from llmint8.tools.bench import median_us

label, rows, shapes, tiles = sys.argv[1:5]
rows = [int(r) for r in rows.split(",")]
shapes = [tuple(int(v) for v in s.split("x")) for s in shapes.split(",")]
tiles = [tuple(int(v) for v in t.split(",")) for t in tiles.split("/")]
fp16 = len(sys.argv) > 5
warps = int(os.environ.get("WARPS", "8"))
if warps != 8:
    ck.FILE_THREADS["weight_only_linear.cu"] = 32 * warps

    def ring_bytes(tile):
        row_tiles, token_tiles, _, span, stages = tile
        return warps * stages * (2 * row_tiles * span + 2 * token_tiles * span) * 32 * 16

    ck.weight_only_shared_memory = cb.weight_only_shared_memory = ring_bytes
names = ck.EXPRESSIONS["weight_only_linear.cu"]
if warps != 8:  # 16 warps' sums of four token tiles exceed 48 KB of static shared memory
    names[:] = [name for name in names if ", 2, 4, 1, 1, " not in name]
for t in tiles:
    for dtype in ck.WEIGHT_ONLY_TYPES:
        name = ck.weight_only_name(dtype, t, True)
        if name not in names:
            names.append(name)
torch.manual_seed(0)


def replay_us(fns):
    for f in fns:
        f()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    return median_us(g.replay, warmup=3, reps=30) / len(fns)


for k, n in shapes:
    copies = 10
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    CB, SCB = F.quantize_weight(w)
    CBs = [CB.clone() for _ in range(copies)]
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    for m in rows:
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        dequantized = CB.double() * (SCB.double()[:, None] / 127)
        reference = x.double() @ dequantized.T + bias.double()
        for t in tiles:
            run = partial(cb.weight_only_linear, tiles=t)
            got = run(x, CB, SCB, bias)
            error = ((got.double() - reference).abs().max() / reference.abs().max()).item()
            warm = [partial(run, x, CB, SCB, bias)] * copies
            cold = [partial(run, x, c, SCB, bias) for c in CBs]
            res = [replay_us(warm), replay_us(cold), replay_us(warm), replay_us(cold)]
            line = f"{label} {k}x{n} m={m} {'x'.join(map(str, t))}: warm {res[0]:.1f}/{res[2]:.1f}"
            line += f" cold {res[1]:.1f}/{res[3]:.1f} error {error:.2e}"
            print(line, flush=True)
        if fp16:
            ws = [w.clone() for _ in range(copies)]
            fw = replay_us([partial(TF.linear, x, w, bias)] * copies)
            fc = replay_us([partial(TF.linear, x, wi, bias) for wi in ws])
            print(f"fp16 {k}x{n} m={m}: warm {fw:.1f} cold {fc:.1f}", flush=True)
            del ws
    del CBs
    torch.cuda.empty_cache()
