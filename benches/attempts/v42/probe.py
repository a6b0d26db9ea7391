"""Graph-replayed µs of LLM.int8() forced on 4096×11008 at 32 and 128 rows, C = 0 / 6 / 64 / 512 /
4096 outlier columns ×40 (benches/NOTES.md v42; `source_edits.sh` runs it per kernel form)."""

import sys
from functools import partial

import torch
from torch import nn

from llmint8.tools.bench import graph_us, ours
from llmint8.tools.bench_outliers import inputs_with_outliers

if __name__ == "__main__":
    label = sys.argv[1]
    generator = torch.Generator().manual_seed(0)
    k, n = 4096, 11008
    layer = ours(nn.Linear(k, n).cuda().half(), 6.0, "cuda", arithmetic="int8")
    for m in (32, 128):
        times = []
        for c in (0, 6, 64, 512, 4096):
            x = inputs_with_outliers(m, k, c, "cuda", torch.float16, generator)
            with torch.no_grad():
                times.append(f"C={c} {graph_us(partial(layer, x)):.1f}")
        print(label, f"{k}x{n} M={m}", " ".join(times), flush=True)
