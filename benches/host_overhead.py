"""Host time of one Linear8bitLt forward on CUDA (the eager path from forward() to the launches),
and where it goes (cProfile), plus the compiled kernels' register and local-memory use.

    python benches/host_overhead.py
"""

from __future__ import annotations

import cProfile
import pstats
import time

import torch

import llmint8
from llmint8.backends import cuda as cuda_backend


def main():
    layer = llmint8.nn.Linear8bitLt(4096, 4096, has_fp16_weights=False, threshold=6.0).cuda()
    x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        for _ in range(20):
            layer(x)
        torch.cuda.synchronize()
        calls = 2000
        start = time.perf_counter()
        for _ in range(calls):
            layer(x)
        host = (time.perf_counter() - start) / calls
        torch.cuda.synchronize()
        print(f"host time per forward (M=1, 4096x4096, threshold 6): {host * 1e6:.1f} µs")
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(200):
            layer(x)
        profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(14)
    with torch.no_grad():  # compile the GEMM variants too, for the resource report below
        for rows in (64, 512):
            layer(torch.randn(rows, 4096, device="cuda", dtype=torch.float16))
    for (_, _file, name), fn in sorted(cuda_backend._functions.items()):
        a = fn.attributes
        print(f"{name:40s} regs {a['num_regs']:3d} local {a['local_size_bytes']:4d} B")


if __name__ == "__main__":
    main()
