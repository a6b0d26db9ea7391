"""For ncu (NOTES v58): one LLM.int8() forward of 8192x28672 at 4096 rows at threshold 0 on
int8_wgmma.cu's 256-token tile, then one on the plan before it (cuBLAS's int8 GEMM and the MODE 2
epilogue). Run:

    ncu --kernel-name regex:"pair|gemm|nvjet|xmma|cutlass" --section SpeedOfLight \\
        --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \\
        --section LaunchStats --section Occupancy -o /tmp/pair \\
        python benches/attempts/v58/pair_ncu.py

and compare the product kernels: tensor pipe and L2 throughput, L2 hit rate, the stall reasons."""

import torch

from llmint8 import functional as F
from llmint8.backends import cuda as cb

torch.manual_seed(0)
k, n, m = 8192, 28672, 4096
w = torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02
CB, SCB = F.quantize_weight(w)
del w
x = torch.randn(m, k, device="cuda", dtype=torch.float16)
for on in (True, False):
    cb._PAIR_TILE = on
    cb._layouts.clear()
    F.int8_linear(x, CB, SCB, None, threshold=0.0, arithmetic="int8")
    torch.cuda.synchronize()
