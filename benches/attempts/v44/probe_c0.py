"""Forced LLM.int8() on 4096x11008 at C = 0 / 6 / 512 and 32 / 64 / 128 rows, graph-replayed, best
of three; what the dense outlier part costs where it does not run.
usage: python benches/attempts/v44/probe_c0.py LABEL
PROBE_TILES="96,1;128,1": INT8_TOKENS_DENSE_TILES for this run ("" none); PROBE_SMALL_GATHER=1:
the gather kernel's grid as without the dense part; PROBE_C="0,6": these C only;
PROBE_ROWS="32,128": these rows only."""

import os
import sys
from functools import partial

import torch
from torch import nn

from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us, ours
from llmint8.tools.bench_outliers import inputs_with_outliers

label = sys.argv[1]
if "PROBE_TILES" in os.environ and hasattr(cb, "INT8_TOKENS_DENSE_TILES"):
    spec = os.environ["PROBE_TILES"]
    cb.INT8_TOKENS_DENSE_TILES = tuple(
        tuple(int(v) for v in tile.split(",")) for tile in spec.split(";") if tile
    )
if os.environ.get("PROBE_SMALL_GATHER") == "1":
    cb.DENSE_PAIRS_PER_WARP = 1 << 30
gen = torch.Generator().manual_seed(0)
k, n = 4096, 11008
linear = nn.Linear(k, n).cuda().half()
layer = ours(linear, 6.0, "cuda", arithmetic="int8")
row = []
for m in [int(r) for r in os.environ.get("PROBE_ROWS", "32,64,128").split(",")]:
    for c in [int(c) for c in os.environ.get("PROBE_C", "0,6,512").split(",")]:
        x = inputs_with_outliers(m, k, c, "cuda", torch.float16, gen)
        with torch.no_grad():
            best = min(graph_us(partial(layer, x)) for _ in range(3))
        row.append(f"{best:.1f}")
print(f"PROBE {label:<24} " + " ".join(row), flush=True)
