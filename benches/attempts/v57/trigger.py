"""`python benches/attempts/v57/trigger.py`: which earlier work leaves the default forward of
4096x4096 at 32 rows slower (10.2 -> 11.9 us after one fp16 nn.Linear, order.py), with the SM clock
read beside each reading."""

import subprocess

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


def default():
    return F.int8_linear(x, CB, SCB, bias, threshold=6.0, arithmetic="auto")


def clock():
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=clocks.sm,clocks.mem,power.draw", "--format=csv,noheader"],
        capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip()


def show(label):
    print(label, " ".join(f"{graph_us(default):.1f}" for _ in range(3)), "|", clock(), flush=True)


show("first:")
a = torch.randn(256, 256, device="cuda", dtype=torch.float32)
a @ a
torch.cuda.synchronize()
show("after a small fp32 matmul:")
h = torch.randn(64, 64, device="cuda", dtype=torch.float16)
h @ h
torch.cuda.synchronize()
show("after a small fp16 matmul:")
layer = torch.nn.Linear(k, n, device="cuda", dtype=torch.float16)
layer(torch.randn(32, k, device="cuda", dtype=torch.float16))
torch.cuda.synchronize()
show("after one fp16 nn.Linear call on another input:")
layer(x)
torch.cuda.synchronize()
show("after one fp16 nn.Linear call on x:")
y = torch.empty(32, n, device="cuda", dtype=torch.float16)
show("after one more allocation of the output's size:")
