"""C = 0 / 6 / 512 forced LLM.int8() graph-replayed on the int8_wgmma.cu shapes, several rounds.
usage: python benches/attempts/v43/probe_c0.py LABEL [pairs_per_warp]"""

import sys
from functools import partial

import torch
from torch import nn

from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us, ours
from llmint8.tools.bench_outliers import inputs_with_outliers

label = sys.argv[1]
if len(sys.argv) > 2 and hasattr(cb, "DENSE_PAIRS_PER_WARP"):
    cb.DENSE_PAIRS_PER_WARP = int(sys.argv[2])
gen = torch.Generator().manual_seed(0)
res = {}
for k, n in [(4096, 4096), (11008, 4096)]:
    linear = nn.Linear(k, n).cuda().half()
    layer = ours(linear, 6.0, "cuda", arithmetic="int8")
    for m in (32, 64, 128):
        for c in (0, 6, 512):
            x = inputs_with_outliers(m, k, c, "cuda", torch.float16, gen)
            with torch.no_grad():
                ts = [graph_us(partial(layer, x)) for _ in range(3)]
            res[(k, m, c)] = min(ts)
cells = " ".join(f"{k}/{m}/{c}={v:.1f}" for (k, m, c), v in res.items())
print(f"PROBE {label} {cells}", flush=True)
