"""A/B of forced LLM.int8() over the outlier-column sweep on the int8_wgmma_tokens.cu shapes
(4096x11008, 8192x28672) at 32 / 64 / 128 rows, graph-replayed, with the plan each row count takes.
usage: python benches/attempts/v44/sweep_ab.py LABEL"""

import sys
from functools import partial

import torch
from torch import nn

from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us, ours, rel_error
from llmint8.tools.bench_outliers import columns_swept, inputs_with_outliers

label = sys.argv[1]
gen = torch.Generator().manual_seed(0)
index = torch.cuda.current_device()
for k, n in [(4096, 11008), (8192, 28672)]:
    linear = nn.Linear(k, n).cuda().half()
    layer = ours(linear, 6.0, "cuda", arithmetic="int8")
    for m in (32, 64, 128):
        plan = cb.plan(index, m, n, k, cublas_ok=True, wgmma_ok=True)
        for c in columns_swept(k):
            x = inputs_with_outliers(m, k, c, "cuda", torch.float16, gen)
            with torch.no_grad():
                ref = linear(x)
                g_fp = graph_us(partial(linear, x))
                g = graph_us(partial(layer, x))
                err = rel_error(layer(x), ref)
            print(
                f"AB {label} {k}x{n} m={m} plan={tuple(plan)} C={c} fp={g_fp:.1f} ours={g:.1f} "
                f"err={err:.4f}",
                flush=True,
            )
    del linear, layer
    torch.cuda.empty_cache()
