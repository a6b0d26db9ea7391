"""Host time of one Linear8bitLt forward on CUDA (the eager path from forward() to the launches),
what its steps cost one by one, where it goes (cProfile), and the compiled kernels' register and
local-memory use. Forwards that need no gradient run a launch prepared once per input shape
(the weight-only product's one launch, LLM.int8()'s two to four launches: no memset where the
gather kernel leaves the stream's outlier mask zeroed); `general path` is the same product
without it.

    python benches/host_overhead.py
"""

from __future__ import annotations

import cProfile
import pstats
import time

import torch

import llmint8
from llmint8.backends import cuda as backend
from llmint8.backends.cuda_kernels import (
    compiled_kernels,
    cupy_module,
    current_stream,
    kernel,
    quantize_name,
)


def host_us(fn, calls=300) -> float:
    """Host seconds per call, in µs: few enough calls (300, up to 1200 launches) that the GPU's
    launch queue does not fill, so a forward whose kernels outlast its host time is still timed
    on the host."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = (time.perf_counter() - start) / calls
    torch.cuda.synchronize()
    return elapsed * 1e6


def attention_projections(fp16: bool, fused: bool) -> torch.nn.Module:
    """q, k and v of a 4096-wide attention block: fp16 `nn.Linear` layers, or `Linear8bitLt`
    layers, multiplied as one product when `fused` (`llmint8.fuse_siblings`)."""
    block = torch.nn.Module()
    for name in ("q_proj", "k_proj", "v_proj"):
        if fp16:
            layer = torch.nn.Linear(4096, 4096, bias=False, device="cuda", dtype=torch.float16)
        else:
            layer = llmint8.nn.Linear8bitLt(
                4096, 4096, bias=False, has_fp16_weights=False, threshold=6.0
            ).cuda()
        setattr(block, name, layer)
    if fused:
        llmint8.fuse_siblings(block)
    return block


def project(block: torch.nn.Module, x: torch.Tensor) -> tuple:
    return block.q_proj(x), block.k_proj(x), block.v_proj(x)


def main():
    layer = llmint8.nn.Linear8bitLt(4096, 4096, has_fp16_weights=False, threshold=6.0).cuda()
    layer0 = llmint8.nn.Linear8bitLt(4096, 4096, has_fp16_weights=False, threshold=0.0).cuda()
    exact = llmint8.nn.Linear8bitLt(
        4096, 4096, has_fp16_weights=False, threshold=6.0, arithmetic="int8"
    ).cuda()
    fp16 = torch.nn.Linear(4096, 4096, device="cuda", dtype=torch.float16)
    qkv = {
        variant: attention_projections(variant == "fp16", fused=variant == "fused")
        for variant in ("fp16", "llmint8", "fused")
    }
    x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
    rows = {m: torch.randn(m, 4096, device="cuda", dtype=torch.float16) for m in (16, 64, 512)}
    quantize = kernel(0, "quantize_rows.cu", quantize_name("__half", True))
    scratch = torch.empty(1 << 20, dtype=torch.uint8, device="cuda")
    base = scratch.data_ptr()
    cupy = cupy_module()
    with torch.no_grad():
        steps = {
            "forward M=1 t=6": lambda: layer(x),
            "forward M=1 t=0": lambda: layer0(x),
            # weight-only (auto): the per-16-token kernel, then (sm_90) the wgmma GEMM
            "forward M=16 t=6": lambda: layer(rows[16]),
            "forward M=64 t=6": lambda: layer(rows[64]),
            # LLM.int8() forced: memset, quantize, gather, product (prepared once per shape)
            "forward M=1 t=6 int8": lambda: exact(x),
            "forward M=64 t=6 int8": lambda: exact(rows[64]),
            "forward M=512 t=6": lambda: layer(rows[512]),
            # the same weight-only products through the general path (no prepared launch)
            "general path M=1 t=6": lambda: llmint8.functional.int8_linear(
                x, layer.weight, layer.weight.SCB, layer.bias, 6.0
            ),
            "general path M=64 t=6": lambda: llmint8.functional.int8_linear(
                rows[64], layer.weight, layer.weight.SCB, layer.bias, 6.0
            ),
            "general path M=64 t=6 int8": lambda: llmint8.functional.int8_linear(
                rows[64], exact.weight, exact.weight.SCB, exact.bias, 6.0, arithmetic="int8"
            ),
            "backend int8_linear M=1 t=6": lambda: backend.int8_linear(
                x, layer.weight.data, layer.weight.SCB, layer.bias, 6.0, None
            ),
            # q, k and v of one input: three layers, or one product for the three (fuse_siblings)
            "q,k,v M=1 fused": lambda: project(qkv["fused"], x),
            "q,k,v M=1": lambda: project(qkv["llmint8"], x),
            "q,k,v M=1 fp16 nn.Linear": lambda: project(qkv["fp16"], x),
            "q,k,v M=64 fused": lambda: project(qkv["fused"], rows[64]),
            "q,k,v M=64": lambda: project(qkv["llmint8"], rows[64]),
            "q,k,v M=64 fp16 nn.Linear": lambda: project(qkv["fp16"], rows[64]),
            "fp16 nn.Linear M=1": lambda: fp16(x),
            "fp16 nn.Linear M=64": lambda: fp16(rows[64]),
            "fp16 nn.Linear M=512": lambda: fp16(rows[512]),
            "torch.empty": lambda: torch.empty(4096, dtype=torch.uint8, device="cuda"),
            "memsetAsync": lambda: cupy.cuda.runtime.memsetAsync(base, 0, 512, current_stream(0)),
            "quantize launch": lambda: quantize.launch(
                (1, 1, 1), 0, x.data_ptr(), base, base + 8192, base + 16384, 1, 4096, 4096, 6.0, 1
            ),
        }
        for name, fn in steps.items():
            print(f"host time per call: {name:32s} {host_us(fn):6.1f} µs", flush=True)
        for rows_in in (x, rows[64]):
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(200):
                layer(rows_in)
            profile.disable()
            print(f"cProfile, 200 forwards of M={rows_in.shape[0]}:")
            pstats.Stats(profile).sort_stats("tottime").print_stats(14)
    with torch.no_grad():  # compile the GEMM variants too, for the resource report below
        for rows in (24, 48, 100, 512):
            layer(torch.randn(rows, 4096, device="cuda", dtype=torch.float16))
    for (_, _file, name), fn in sorted(compiled_kernels().items()):
        a = fn.attributes
        print(f"{name:44s} regs {a['num_regs']:3d} local {a['local_size_bytes']:4d} B")


if __name__ == "__main__":
    main()
