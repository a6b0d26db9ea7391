"""A/B of forced LLM.int8() over the outlier-column sweep on the int8_wgmma.cu shapes.
usage: python benches/attempts/v43/sweep_ab.py LABEL [max_tokens]"""

import sys
from functools import partial

import torch
from torch import nn

from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us, ours, rel_error
from llmint8.tools.bench_outliers import columns_swept, inputs_with_outliers

label = sys.argv[1]
if len(sys.argv) > 2:
    limit = int(sys.argv[2])
    cb.INT8_WGMMA_TOKEN_TILES = tuple(t for t in cb.INT8_WGMMA_TOKEN_TILES if t[0] <= limit)
    cb._int8_wgmma_plans.clear()
    cb._layouts.clear()
gen = torch.Generator().manual_seed(0)
index = torch.cuda.current_device()
for k, n in [(4096, 4096), (11008, 4096), (4096, 11008)]:
    linear = nn.Linear(k, n).cuda().half()
    layer = ours(linear, 6.0, "cuda", arithmetic="int8")
    for m in (32, 64, 128):
        plan = cb.int8_wgmma_plan(index, m, n, k)
        for c in columns_swept(k):
            x = inputs_with_outliers(m, k, c, "cuda", torch.float16, gen)
            with torch.no_grad():
                ref = linear(x)
                g_fp = graph_us(partial(linear, x))
                g = graph_us(partial(layer, x))
                err = rel_error(layer(x), ref)
            print(
                f"AB {label} {k}x{n} m={m} plan={plan} C={c} fp={g_fp:.1f} ours={g:.1f} "
                f"err={err:.4f}",
                flush=True,
            )
