"""For ncu, the next step of NOTES v57: the default forward of 4096x4096 at 32 rows (the register
tile of weight_only_linear.cu) three times before one fp16 nn.Linear(4096, 4096) call and three
times after it, in a process as small as `trigger.py`'s (where the call left the graph-replayed
forward 10.0 -> 11.8 us). Run:

    ncu --kernel-name regex:weight_only_linear --set full --cache-control none \\
        --clock-control none -o /tmp/two_states python benches/attempts/v57/two_states_ncu.py

(`--cache-control none --clock-control none`: ncu's defaults flush the caches and lock the
clocks, which would hide a state the process's history sets), then compare launches 1-3 with
4-6: L1 and L2 hit rates, DRAM and L2 bytes, achieved occupancy, the stall reasons, and the
launch's shared memory configuration (`launch__shared_mem_config_size`)."""

import torch

from llmint8 import functional as F

torch.manual_seed(0)
k = n = 4096
w = torch.randn(n, k, device="cuda", dtype=torch.float16)
CB, SCB = F.quantize_weight(w)
bias = torch.randn(n, device="cuda", dtype=torch.float16)
del w
x = torch.randn(32, k, device="cuda", dtype=torch.float16)
for _ in range(3):
    F.int8_linear(x, CB, SCB, bias, 6.0, arithmetic="auto")
torch.cuda.synchronize()
layer = torch.nn.Linear(k, n, device="cuda", dtype=torch.float16)
layer(x)
torch.cuda.synchronize()
for _ in range(3):
    F.int8_linear(x, CB, SCB, bias, 6.0, arithmetic="auto")
torch.cuda.synchronize()
