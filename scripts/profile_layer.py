"""GPU time of each kernel in one int8 layer's forward (torch.profiler, CUDA activities), for
finding where a layer's time goes: python scripts/profile_layer.py K N M C [C ...]

The input is standard normal with C of its columns scaled ×40 (outliers at threshold 6), as in
`llmint8 bench --outliers`; every configuration runs eagerly 20 times after a warm-up.
"""

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from llmint8.tools.bench import ours
from llmint8.tools.bench_outliers import inputs_with_outliers


def kernel_times(layer, x, repeats=20) -> dict[str, float]:
    with torch.no_grad():
        for _ in range(3):
            layer(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(repeats):
                layer(x)
            torch.cuda.synchronize()
    totals = defaultdict(float)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            totals[event.name[:70]] += event.device_time / repeats
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("k", type=int)
    parser.add_argument("n", type=int)
    parser.add_argument("m", type=int)
    parser.add_argument("columns", type=int, nargs="+")
    args = parser.parse_args()
    torch.manual_seed(0)
    layer = ours(torch.nn.Linear(args.k, args.n).half(), threshold=6.0)
    generator = torch.Generator().manual_seed(0)
    for c in args.columns:
        x = inputs_with_outliers(args.m, args.k, c, "cuda", torch.float16, generator)
        times = kernel_times(layer, x)
        print(f"K={args.k} N={args.n} M={args.m} C={c}: {sum(times.values()):.1f} µs in kernels")
        for name, us in sorted(times.items(), key=lambda item: -item[1]):
            print(f"  {us:9.1f} µs  {name}")


if __name__ == "__main__":
    main()
