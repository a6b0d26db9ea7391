"""Five forced LLM.int8() forwards of a 4096x11008 layer at C outlier columns and M rows, for ncu:
    ncu --kernel-name regex:"int8_wgmma_tokens|gather" --launch-skip 8 --launch-count 2 \\
        --section SpeedOfLight --section WarpStateStats --section SchedulerStats \\
        python benches/attempts/v44/ncu_dense.py C M
(the fifth forward's gather and product; run once without ncu first to compile)."""

import sys

import torch
from torch import nn

from llmint8.tools.bench import ours
from llmint8.tools.bench_outliers import inputs_with_outliers

c, m = int(sys.argv[1]), int(sys.argv[2])
gen = torch.Generator().manual_seed(0)
k, n = 4096, 11008
linear = nn.Linear(k, n).cuda().half()
layer = ours(linear, 6.0, "cuda", arithmetic="int8")
x = inputs_with_outliers(m, k, c, "cuda", torch.float16, gen)
with torch.no_grad():
    for _ in range(5):
        layer(x)
torch.cuda.synchronize()
