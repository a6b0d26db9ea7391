"""`python benches/attempts/v58/pair_ab.py ROWS SHAPES`: int8_wgmma.cu's 256-token tile (pairs of
blocks sharing the tokens' box, NOTES v58) against the plan before it (cuBLAS's int8 GEMM and the
MODE 2 epilogue), graph-replayed (10 forwards a graph) at threshold 6 with benches' 6 planted
outlier columns: the default forward ("auto"), forced LLM.int8() (no hand-over), threshold 0 (no
outlier part) and the default eager; fp16 F.linear and cuBLAS's int8 product alone
(torch._int_mm) beside. Prints µs and the largest difference of the two plans' outputs.
ROWS: 512,2048,4096; SHAPES: 4096x4096,8192x28672 (K x N)."""

import sys
from functools import partial

import torch
import torch.nn.functional as TF

from llmint8 import functional as F
from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us, median_us, planted

rows = [int(r) for r in sys.argv[1].split(",")]
shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[2].split(",")]
torch.manual_seed(0)


def use_pair(on: bool) -> None:
    cb._PAIR_TILE = on
    cb._layouts.clear()


def point(k: int, n: int, m: int, w, CB, SCB, bias) -> str:
    x = planted(m, k, "cuda", torch.float16)
    xq = torch.randint(-127, 128, (m, k), device="cuda", dtype=torch.int8)
    fp16 = graph_us(partial(TF.linear, x, w, bias))
    int_mm = graph_us(partial(torch._int_mm, xq, CB.t()))
    line = f"{k}x{n} m={m}: fp16 {fp16:.1f} int_mm {int_mm:.1f}"
    outs, t6 = {}, 0.0
    for on in (False, True, False, True):
        use_pair(on)
        name = "pair" if on else "before"
        plan = cb.plan(0, m, n, k, cublas_ok=True, wgmma_ok=True)
        forward = partial(F.int8_linear, x, CB, SCB, bias)
        t6 = graph_us(partial(forward, threshold=6.0))
        forced = graph_us(partial(forward, threshold=6.0, arithmetic="int8"))
        t0 = graph_us(partial(forward, threshold=0.0))
        eager = median_us(partial(forward, threshold=6.0))
        outs[name] = forward(threshold=6.0).float()
        line += f" | {name} [{plan.kernel} {plan.tile_rows}] t6 {t6:.1f} int8 {forced:.1f}"
        line += f" t0 {t0:.1f} eager {eager:.1f}"
    diff = (outs["pair"] - outs["before"]).abs().max().item()
    scale = outs["before"].abs().max().item()
    return f"{line} | diff {diff:.3g} of {scale:.3g} | pair vs fp16 {fp16 / t6:.2f}x"


for k, n in shapes:
    w = torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02
    CB, SCB = F.quantize_weight(w)
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    for m in rows:
        print(point(k, n, m, w, CB, SCB, bias), flush=True)
    del w, CB, SCB
    torch.cuda.empty_cache()
