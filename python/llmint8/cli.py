"""The `llmint8` command."""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(device=args.device, sentences=args.sentences, threshold=args.threshold)
    print(result.table())
    return 0 if result.reload_bit_exact else 1


def _checked_device(parser: argparse.ArgumentParser, name: str) -> str:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        parser.error(f"--device {name!r} is not a device (try cpu or cuda:0)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {name!r}: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {name!r}: llmint8 runs on cpu and cuda devices")
    return name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmint8", description="LLM.int8() inference: int8 linear layers with fp outliers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="convert a real model (all-MiniLM-L6-v2) to int8 and compare it with the original",
        description="Converts the packaged all-MiniLM-L6-v2 to int8, saves and reloads it, and "
        "prints memory before/after and embedding similarity on real sentences.",
    )
    demo.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda if present)")
    demo.add_argument("--sentences", type=int, default=256, help="how many sentences to embed")
    demo.add_argument("--threshold", type=float, default=6.0, help="outlier threshold")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from .demo import DemoUnavailableError
    from .errors import FormatError, UnsupportedDeviceError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "sentences", 1) < 1:
        parser.error("--sentences must be at least 1")
    if getattr(args, "device", None) is not None:
        args.device = _checked_device(parser, args.device)
    try:
        return args.run(args)
    except (DemoUnavailableError, FormatError, UnsupportedDeviceError, FileNotFoundError) as err:
        print(f"llmint8: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
