"""Checkpoint load speed: `llmint8.load_state_dict` of a 1 GiB file (16 float32 tensors of
4096×4096, in the page cache), with and without checksum verification; median of 7 loads.

    python benches/load.py [--dir DIR] [--gib 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import llmint8


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to write the file (default: a temp dir)")
    parser.add_argument("--gib", type=int, default=1, help="file size in GiB")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = os.path.join(directory, "big.safetensors")
        torch.manual_seed(0)
        state = {f"layers.{i}.weight": torch.randn(4096, 4096) for i in range(16 * args.gib)}
        llmint8.save_state_dict(state, path)
        del state
        size = os.path.getsize(path)
        print(f"| checksums | median ms | GiB/s | min–max ms |  ({size / 2**30:.2f} GiB file)")
        print("|---|---|---|---|")
        for verify in (True, False):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                loaded, _ = llmint8.load_state_dict(path, verify_checksums=verify)
                times.append(time.perf_counter() - start)
                del loaded
            median = statistics.median(times)
            spread = f"{min(times) * 1e3:.0f}–{max(times) * 1e3:.0f}"
            rate = size / median / 2**30
            name = "verified" if verify else "skipped"
            print(f"| {name} | {median * 1e3:.0f} | {rate:.2f} | {spread} |")


if __name__ == "__main__":
    main()
