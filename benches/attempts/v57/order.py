"""`python benches/attempts/v57/order.py`: the default forward of 4096x4096 at 32 rows
graph-replayed several times in one process, before and after other work (allocations, forced
LLM.int8(), fp16 nn.Linear calls, idle time, 64 MB streamed), then with carveout hints on the
weight-only kernels, to find what makes the same kernel 11.0 or 9.6 us (timeline.py's first and
later readings)."""

import time

import torch

from llmint8 import functional as F
from llmint8.tools.bench import graph_us

torch.manual_seed(0)
k = n = 4096
w = torch.randn(n, k, device="cuda", dtype=torch.float16)
CB, SCB = F.quantize_weight(w)
bias = torch.randn(n, device="cuda", dtype=torch.float16)
del w
x = torch.randn(32, k, device="cuda", dtype=torch.float16)
x[:, torch.randperm(k, device="cuda")[:6]] *= 20.0


def default():
    return F.int8_linear(x, CB, SCB, bias, threshold=6.0, arithmetic="auto")


def forced():
    return F.int8_linear(x, CB, SCB, bias, threshold=6.0, arithmetic="int8")


def show(label):
    print(label, " ".join(f"{graph_us(default):.1f}" for _ in range(3)), flush=True)


show("default x3, first:")
show("default x3, again:")
junk = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
show("after a 64 MB allocation:")
print("forced int8:", f"{graph_us(forced):.1f}")
show("after forced int8:")
del junk
torch.cuda.empty_cache()
show("after freeing 64 MB:")
layer = torch.nn.Linear(k, n, device="cuda", dtype=torch.float16)
print("fp16:", f"{graph_us(lambda: layer(x)):.1f}")
show("after fp16:")
show("after fp16, again:")
print("fp16:", f"{graph_us(lambda: layer(x)):.1f}")
torch.cuda.synchronize()
time.sleep(0.5)
show("after fp16 and 0.5 s:")
other = torch.randn(32 << 20, device="cuda", dtype=torch.float16)  # 64 MB through L2
for _ in range(20):
    other.mul_(1.0)
show("after streaming 64 MB x20:")
# The shared-memory carveout: after cuBLAS, the SMs may stay configured with little L1.
import cupy  # noqa: E402

from llmint8.backends import cuda_kernels  # noqa: E402

CARVEOUT = 9  # CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT
names = [key[2] for key in cuda_kernels._kernels if "weight_only_linear" in key[2]]
print("weight-only kernels loaded:", names)
for percent in (0, 10, 25, 50, 100, -1):
    for key, kern in cuda_kernels._kernels.items():
        if "weight_only_linear" in key[2]:
            cupy.cuda.driver.funcSetAttribute(kern.pointer, CARVEOUT, percent)
    print("fp16:", f"{graph_us(lambda: layer(x)):.1f}")
    show(f"carveout {percent}% after fp16:")
