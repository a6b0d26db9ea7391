"""Runs the reliability suites (hostile files, hostile values, untrusted files, crash safety,
load) with their counts and writes the table of what was tried and what came out to
docs/RELIABILITY.md.

    python scripts/reliability_report.py [--out docs/RELIABILITY.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROPTEST_CASES = 1000
KILL_TRIALS = 50

# (area, what is tried, count, command, environment)
SUITES = [
    (
        "hostile files (Rust reader)",
        "arbitrary bytes (0–2 KiB) opened and read",
        f"{PROPTEST_CASES} files",
        ["cargo", "test", "--quiet", "--lib", "hostile_files::arbitrary_bytes"],
        {},
    ),
    (
        "hostile files (Rust reader)",
        "arbitrary headers, header length any u64",
        f"{PROPTEST_CASES} files",
        ["cargo", "test", "--quiet", "--lib", "hostile_files::arbitrary_headers"],
        {},
    ),
    (
        "hostile files (Rust reader)",
        "valid llmint8 file, 1–5 bytes changed anywhere, maybe truncated: "
        "refused or the same tensors",
        f"{PROPTEST_CASES} files",
        ["cargo", "test", "--quiet", "--lib", "hostile_files::mutated"],
        {},
    ),
    (
        "hostile files (Rust reader)",
        "valid llmint8 file, 1–2 header bytes and 1 data byte changed: always refused (a damaged "
        "format marker must not switch the checksums off)",
        f"{PROPTEST_CASES} files",
        ["cargo", "test", "--quiet", "--lib", "hostile_files::header_and_data"],
        {},
    ),
    (
        "hostile files (Rust reader)",
        "corpus: header length 2^63 / u64::MAX / past the end, offsets "
        "past the end, overlapping tensors, dtype/shape vs offsets, unknown dtype, 5000-deep JSON, "
        "non-UTF-8 header, SCB wrong length/dtype, NaN/Inf/negative scales, shape swapped",
        "9 cases",
        ["cargo", "test", "--quiet", "--lib", "hostile_files::"],
        {},
    ),
    (
        "hostile files (Python API)",
        "saved checkpoint, 1–4 bytes changed anywhere, maybe truncated; a damaged format "
        "marker with a changed weight; the same model saves to the same bytes",
        "300 files + 3 tests",
        ["-m", "pytest", "-q", "tests/test_hostile_files.py"],
        {},
    ),
    (
        "hostile values",
        "NaN/±Inf/denormal/zero activations, zero rows and columns, thresholds "
        "0/1e-3/6/1e30, K=1, M=0, transposed and strided inputs, fp16/bf16/fp32; NaN/Inf weights",
        "400 cases + 6 tests",
        ["-m", "pytest", "-q", "tests/test_hostile_values.py"],
        {},
    ),
    (
        "untrusted files",
        "pickle with code in a .bin (never runs), index entries ../, absolute, "
        "symlink out of the directory, plain .bin weights",
        "6 tests",
        ["-m", "pytest", "-q", "tests/test_untrusted_files.py"],
        {},
    ),
    (
        "crash safety",
        "save_quantized and `llmint8 quantize --overwrite` killed with SIGKILL at "
        "random moments: destination intact (old or new, checksum-clean)",
        f"{2 * KILL_TRIALS} kills",
        ["-m", "pytest", "-q", "-s", "tests/test_crash_safety.py"],
        {"LLMINT8_KILL_TRIALS": str(KILL_TRIALS)},
    ),
    (
        "load",
        "8 threads × 3 rounds × 24 shapes on shared layers = one thread's results; 3000 "
        "forwards with changing shapes, host memory",
        "576 + 3000 forwards",
        ["-m", "pytest", "-q", "-s", "tests/test_load.py"],
        {},
    ),
]
NUMBERS = re.compile(r"(host RSS growth|GPU memory growth|save_quantized:|llmint8 quantize:)[^\n]*")


def run(command, extra_env):
    env = {**os.environ, "PROPTEST_CASES": str(PROPTEST_CASES), **extra_env}
    if command[0] != "cargo":
        command = [sys.executable, *command]
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    passed = result.returncode == 0
    notes = [m.group(0) for m in NUMBERS.finditer(result.stdout)]
    if not passed:
        notes += (result.stdout + result.stderr).strip().splitlines()[-3:]
    return passed, seconds, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "RELIABILITY.md"))
    args = parser.parse_args(argv)
    rows, failures = [], 0
    for area, tried, count, command, env in SUITES:
        passed, seconds, notes = run(command, env)
        failures += not passed
        outcome = "all passed" if passed else "**FAILED**"
        detail = "; ".join(notes)
        rows.append(f"| {area} | {tried} | {count} | {outcome}{': ' + detail if detail else ''} "
                    f"| {seconds:.0f} s |")  # fmt: skip
        print(rows[-1], flush=True)
    text = [
        "# Reliability",
        "",
        "What llmint8 was made to withstand, and what came out. Regenerate with "
        "`python scripts/reliability_report.py` (this file is its output); `bash .ci/run` runs "
        "the same suites with their default counts (Rust properties: 400 cases each).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        f"; Rust property cases per property: {PROPTEST_CASES}; kills per writer: {KILL_TRIALS}.",
        "",
        "| area | what was tried | count | outcome | time |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Policies these tests hold llmint8 to:",
        "- A file never runs code: safetensors is parsed, not unpickled; PyTorch `.bin`/`.pt` "
        "inputs go through `torch.load(weights_only=True)`, and a file it refuses is named.",
        "- Every tensor carries a CRC-32 of its dtype, shape and bytes in the header, verified on "
        "load (`verify_checksums=False` skips only that, for speed); a damaged file is refused "
        "with `FormatError` naming the tensor, or (damage outside any tensor or checksum, e.g. in "
        "free-form metadata) loads to exactly the tensors that were saved. A file is read as "
        "foreign (a bitsandbytes/transformers file, without checksums) only when its metadata "
        "names llmint8 nowhere, so damage to the format marker cannot switch the checksums off.",
        "- Writes go to a temporary file named with the writer's process id, are synced, then "
        "renamed over the destination; `llmint8 quantize` builds a directory beside the "
        "destination and swaps it in atomically. What a killed writer leaves is removed by the "
        "next write once its process is gone.",
        "- Shard indices cannot name files outside their checkpoint directory.",
        "- Non-finite activations propagate to their own output row only (as fp16 would); "
        "weights with NaN/Inf are refused with `QuantizationError`.",
        "- GPU variants of the load tests (threads racing the first kernel compilation, GPU "
        "memory over 3000 forwards) are marked `gpu` and run on the GPU machine.",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(text))
    print(f"written: {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
