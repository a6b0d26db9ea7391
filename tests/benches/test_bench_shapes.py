"""`llmint8 bench --shapes`: the layer table and the outlier sweep over the weight shapes given,
on the CPU (the timings themselves are measurements, not assertions)."""

import argparse

import pytest

from llmint8.tools.bench import run_bench, weight_shape


def table_rows(table: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip()[:1].isdigit()
    ]


def test_the_layer_table_takes_the_shapes_it_is_given():
    table = run_bench(device="cpu", shapes=[(96, 40), (32, 72)], rows=[1, 3])
    rows = table_rows(table)
    assert [(row[0], row[1]) for row in rows] == [
        ("96×40", "1"), ("96×40", "3"), ("32×72", "1"), ("32×72", "3"),
    ]  # fmt: skip
    for row in rows:
        assert float(row[-1]) < 0.05  # relative error at threshold 6


def test_the_outlier_sweep_takes_the_shapes_it_is_given():
    table = run_bench(device="cpu", outliers=True, shapes=[(128, 24)], rows=[2])
    rows = table_rows(table)
    assert rows and {(row[0], row[1]) for row in rows} == {("128×24", "2")}


@pytest.mark.parametrize("text, shape", [("4096x11008", (4096, 11008)), ("64×8", (64, 8))])
def test_a_weight_shape_reads_as_the_tables_print_it(text, shape):
    assert weight_shape(text) == shape


@pytest.mark.parametrize("text", ["4096", "0x16", "16x0", "ax3", "1x2x3", "-4x4", "4 x 4", ""])
def test_a_bad_weight_shape_names_the_form_it_takes(text):
    with pytest.raises(argparse.ArgumentTypeError, match="must be KxN"):
        weight_shape(text)
