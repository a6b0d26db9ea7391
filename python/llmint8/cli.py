"""The `llmint8` command: quantize, inspect, eval, bench, demo.

Bad arguments and unusable input print one line naming the problem on stderr and exit with 2
(argparse's own convention); nothing is written then.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Optional


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(
        device=args.device, sentences=args.sentences, threshold=args.threshold,
        progress=not args.quiet,
    )  # fmt: skip
    print(result.table())
    return 0 if result.reload_bit_exact else 1


def _quantize(args: argparse.Namespace) -> int:
    from .tools.quantize import quantize

    report = quantize(
        args.src, args.dst, threshold=args.threshold, skip=args.skip, calibrate=args.calibrate,
        overwrite=args.overwrite, progress=not args.quiet, device=args.device,
        min_fraction=args.min_fraction, dtype=args.dtype,
    )  # fmt: skip
    print(report.table())
    print(f"written: {args.dst}")
    print(f"load it: {report.how_to_load}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .tools.inspect import inspect_checkpoint

    if args.plot:
        _check_plot_dependencies()
    report = inspect_checkpoint(args.path)
    print(report.to_json() if args.json else report.table())
    if args.plot:
        report.plot(args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .tools.evaluate import evaluate

    result = evaluate(
        args.model, args.text, device=args.device, max_lines=args.max_lines,
        progress=not args.quiet,
    )  # fmt: skip
    print(result.table())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .tools.bench import run_bench

    if args.plot:
        _check_plot_dependencies()
    run_bench(
        device=args.device,
        quick=args.quick,
        out=args.out,
        plot=args.plot,
        outliers=args.outliers,
        rows=args.rows,
        shapes=args.shapes,
    )  # fmt: skip  (prints rows)
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _check_plot_dependencies() -> None:
    from ._optional import require

    require("matplotlib", "--plot")


def _threshold(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _weight_shape(text: str) -> tuple[int, int]:
    from .tools.bench import weight_shape

    return weight_shape(text)


def _output(suffix=None):
    """An argparse type: a path the command can write (checked before any work)."""

    def check(text: str) -> str:
        from .tools import UsageError
        from .tools.outputs import check_output_path

        try:
            check_output_path(text, "", suffix)
        except UsageError as err:
            raise argparse.ArgumentTypeError(str(err).strip()) from None
        return text

    return check


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``llmint8 quantize: error: ...``); --help shows usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda if present)")


def _command(commands, name: str, run, summary: str, description: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=description)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llmint8", description="LLM.int8() inference: int8 linear layers with fp outliers."
    )
    from . import FORMAT_VERSION, __version__

    parser.add_argument(
        "--version", action="version",
        version=f"llmint8 {__version__} (checkpoint format {FORMAT_VERSION})",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quantize = _command(
        commands,
        "quantize",
        _quantize,
        "write an int8 copy of a checkpoint (file, sharded directory or transformers model)",
        "Quantizes the linear layers of SRC to int8 (LLM.int8(): row-wise absmax, "
        "with the statistics) and writes DST, shard by shard, atomically. A transformers model "
        "directory gives a directory that from_pretrained loads.",
    )
    quantize.add_argument("src", help="a .safetensors file or a checkpoint directory")
    quantize.add_argument("dst", help="where the int8 copy goes (file for a file, else directory)")
    quantize.add_argument(
        "--threshold", type=_threshold, default=6.0, help="outlier threshold (6.0)"
    )
    quantize.add_argument(
        "--skip", nargs="+", default=None, metavar="MODULE",
        help="modules kept in floating point (besides lm_head; without a config also embeddings)",
    )  # fmt: skip
    quantize.add_argument(
        "--calibrate", metavar="TEXTFILE", default=None,
        help="run these lines of text through the model and store static outlier columns",
    )  # fmt: skip
    quantize.add_argument(
        "--min-fraction", type=_fraction, default=0.5,
        help="with --calibrate: a column is static when it is an outlier in this share of lines",
    )  # fmt: skip
    quantize.add_argument(
        "--dtype", choices=("float16", "bfloat16", "float32"), default=None,
        help="dtype of the tensors left in floating point (default: as they are)",
    )  # fmt: skip
    quantize.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    quantize.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(quantize)

    inspect = _command(
        commands,
        "inspect",
        _inspect,
        "per-layer table of a checkpoint (sizes, quantization error, outlier columns)",
        "Lists every int8 layer (or, in a floating-point checkpoint, every layer "
        "llmint8 would quantize): shape, dtypes, bytes before/after, weight quantization error "
        "and calibrated outlier columns, with totals.",
    )
    inspect.add_argument("path", help="a .safetensors file or a checkpoint directory")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of the table")
    inspect.add_argument(
        "--plot", metavar="PNG", default=None, type=_output(".png"),
        help="write per-layer error and outlier counts (and the outlier heatmap) to this PNG",
    )  # fmt: skip

    evaluate = _command(
        commands,
        "eval",
        _eval,
        "perplexity (causal LM) or embedding similarity (encoder): fp vs int8",
        "Runs the text through the original model, int8 at threshold 6.0 and plain "
        "absmax int8 (threshold 0) and prints the metric, the difference to the original and "
        "its standard error.",
    )
    evaluate.add_argument("model", help="a transformers model directory (floating point)")
    evaluate.add_argument("--text", required=True, help="a UTF-8 text file, one sample per line")
    evaluate.add_argument("--max-lines", type=_positive, default=None, help="use at most this many")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_device(evaluate)

    bench = _command(
        commands,
        "bench",
        _bench,
        "layer benchmark: fp16 nn.Linear vs llmint8 (and bitsandbytes where installed)",
        "Times the layer grid on the GPU it finds (else the CPU) and prints the "
        "side-by-side table.",
    )
    bench.add_argument("--quick", action="store_true", help="a small grid")
    bench.add_argument(
        "--rows", metavar="M", type=_positive, nargs="+", default=None,
        help="these row counts (tokens) instead of the grid's",
    )  # fmt: skip
    bench.add_argument(
        "--shapes", metavar="KxN", type=_weight_shape, nargs="+", default=None,
        help="these weight shapes (in by out features, e.g. 4096x11008) instead of the grid's",
    )  # fmt: skip
    bench.add_argument(
        "--outliers", action="store_true",
        help="sweep the number of outlier columns (0, 6, 64, 512, K/4, K) instead of the grid"
        " (at --rows where given)",
    )  # fmt: skip
    bench.add_argument(
        "--out", default=None, type=_output(), help="also write the table (markdown) here"
    )
    bench.add_argument(
        "--plot", metavar="PNG", default=None, type=_output(".png"), help="write a speed-up chart"
    )
    _add_device(bench)

    demo = _command(
        commands,
        "demo",
        _demo,
        "convert a real model (all-MiniLM-L6-v2) to int8 and compare it with the original",
        "Converts the packaged all-MiniLM-L6-v2 to int8, saves and reloads it, and "
        "prints memory before/after and embedding similarity on real sentences.",
    )
    _add_device(demo)
    demo.add_argument(
        "--sentences", type=_positive, default=256, help="how many sentences to embed"
    )
    demo.add_argument("--threshold", type=_threshold, default=6.0, help="outlier threshold")
    demo.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from .demo import DemoUnavailableError
    from .errors import (
        FormatError,
        QuantizationError,
        UnsupportedDeviceError,
        UnsupportedDtypeError,
    )
    from .tools import UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "device", None) is not None:
        args.device = _checked_device(parser, args.device)
    expected = (
        UsageError, FormatError, QuantizationError, UnsupportedDeviceError,
        UnsupportedDtypeError, DemoUnavailableError, OSError, ImportError,
    )  # fmt: skip
    try:
        return args.run(args)
    except expected as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"llmint8 {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        # Commands that write say what became of their destination; the others write nothing.
        outcome = getattr(err, "outcome", None) or "interrupted"
        print(f"llmint8 {args.command}: {outcome}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
