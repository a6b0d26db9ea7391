"""Where a decode step's GPU time goes: the kernels of CUDA-graph-replayed decode steps of the
benchmark model (benches/model.py: Llama-style, random fp16 weights, realistic profile), per
variant, with the step's wall time beside the sum of its kernels, and the idle time between
consecutive kernels by transition. `--host` adds the host side of the compiled step: its time per
call (from a synchronized GPU to the call's return) and the Python functions it spends it in.

    python scripts/profile_decode.py [--size 7b] [--batch 1] [--variants fp16 llmint8] [--host]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))
import model as bench

STEPS = 5


@torch.no_grad()
def profile(size: str, variant: str, batch: int, host: bool) -> None:
    model = bench.build(size, variant, "realistic")
    cache = transformers.StaticCache(config=model.config, max_batch_size=batch,
                                     max_cache_len=bench.PROMPT + 16 + 6 * STEPS + 8, device="cuda",
                                     dtype=torch.float16)  # fmt: skip
    step = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    ids = torch.randint(0, 32000, (batch, bench.PROMPT), device="cuda")
    position = torch.arange(bench.PROMPT, device="cuda")
    token = model(ids, past_key_values=cache, cache_position=position).logits[:, -1:].argmax(-1)
    positions = [torch.tensor([bench.PROMPT + i], device="cuda") for i in range(16 + 6 * STEPS)]

    def one_step(i):
        nonlocal token
        token = step(token, past_key_values=cache, cache_position=positions[i]).logits
        token = token[:, -1:].argmax(-1)

    for i in range(16):
        one_step(i)
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for i in range(16, 16 + STEPS):
            one_step(i)
        torch.cuda.synchronize()
    wall = sum(bench.cuda_seconds(lambda i=i: one_step(16 + i % STEPS)) for i in range(STEPS))
    if host:
        host_side(one_step, first=16 + 2 * STEPS)
    kernels = sorted(
        (e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
        key=lambda e: e.time_range.start,
    )  # fmt: skip
    per_kernel: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for event in kernels:
        entry = per_kernel[event.name]
        entry[0] += event.device_time_total / STEPS
        entry[1] += 1 / STEPS
    # Idle time before each kernel (from the previous kernel's end), by transition, per step.
    gaps: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for before, after in zip(kernels, kernels[1:]):
        idle = after.time_range.start - before.time_range.end
        if 0 < idle < 50:  # between the steps' graphs the host waits: not counted
            entry = gaps[f"{before.name[:40]} -> {after.name[:40]}"]
            entry[0] += idle / STEPS
            entry[1] += 1 / STEPS
    total = sum(t for t, _ in per_kernel.values())
    count = sum(c for _, c in per_kernel.values())
    print(f"\n{size} {variant} batch {batch}: step {wall / STEPS * 1e3:.3f} ms wall, kernels "
          f"{total / 1e3:.3f} ms in {count:.0f} launches")  # fmt: skip
    for name, (t, c) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:20]:
        print(f"  {t:9.1f} µs  {c:6.0f}×  {name[:110]}")
    idle = sum(t for t, _ in gaps.values())
    print(f"  idle between kernels inside a step: {idle / 1e3:.3f} ms; largest, by transition:")
    for name, (t, c) in sorted(gaps.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"  {t:9.1f} µs  {c:6.0f}×  {t / max(c, 1e-9):5.2f} µs each  {name}")


def host_side(one_step, first: int) -> None:
    """The compiled step's host time per call (steps `first` ...), and where cProfile finds it
    spent."""
    calls = []
    for i in range(2 * STEPS):
        torch.cuda.synchronize()
        start = time.perf_counter()
        one_step(first + i)
        calls.append(time.perf_counter() - start)
    torch.cuda.synchronize()
    print(f"  host per step (GPU idle before the call): median {statistics.median(calls) * 1e6:.0f}"
          f" µs, min {min(calls) * 1e6:.0f} µs")  # fmt: skip
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(2 * STEPS):
        one_step(first + 2 * STEPS + i)
    torch.cuda.synchronize()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(18)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="7b", choices=list(bench.SIZES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["llmint8", "fp16"])
    parser.add_argument("--host", action="store_true", help="also the compiled step's host side")
    args = parser.parse_args(argv)
    for variant in args.variants:
        profile(args.size, variant, args.batch, args.host)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
