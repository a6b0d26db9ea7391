"""How many int8 weight codes differ between llmint8 (CPU and CUDA backends) and bitsandbytes
(its CUDA kernel and its torch formula), from the same random fp16 weights. Run on a GPU machine
with bitsandbytes installed:

    python scripts/compare_bnb_codes.py [--rows 4096] [--cols 4096] [--seeds 3]
"""

from __future__ import annotations

import argparse

import torch

from llmint8 import functional as F


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    import bitsandbytes as bnb

    print("| seed | elements | ours CPU vs ours CUDA | ours vs bnb formula | ours vs bnb CUDA "
          "| bnb formula vs bnb CUDA | SCB equal |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        generator = torch.Generator().manual_seed(seed)
        weight = (torch.randn(args.rows, args.cols, generator=generator) * 0.02).half()
        cpu_codes, cpu_scales = F.quantize_weight(weight)
        gpu_codes, _ = F.quantize_weight(weight.cuda())
        row_stats = weight.abs().amax(dim=1).float()
        formula = torch.round(weight * (127.0 / row_stats.unsqueeze(-1))).to(torch.int8)
        bnb_codes, bnb_scales, _ = bnb.functional.int8_vectorwise_quant(weight.cuda())

        def differ(a, b):
            return int((a.cpu() != b.cpu()).sum())

        print(
            f"| {seed} | {weight.numel()} | {differ(cpu_codes, gpu_codes)} | "
            f"{differ(cpu_codes, formula)} | {differ(cpu_codes, bnb_codes)} | "
            f"{differ(formula, bnb_codes)} | {torch.equal(cpu_scales, bnb_scales.cpu())} |"
        )


if __name__ == "__main__":
    main()
