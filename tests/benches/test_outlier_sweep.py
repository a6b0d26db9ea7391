"""`llmint8 bench --outliers` on the CPU: one row per number of outlier columns, each finding at
least the columns planted (the timings themselves are measurements, not assertions)."""

import torch

from llmint8.tools.bench_outliers import CPU_SHAPES, columns_swept, inputs_with_outliers


def test_planted_columns_are_outliers_in_a_batch_of_16():
    generator = torch.Generator().manual_seed(0)
    for c in columns_swept(1024):
        x = inputs_with_outliers(16, 1024, c, "cpu", torch.float32, generator)
        assert int((x.abs() >= 6.0).any(dim=0).sum()) >= c


def test_the_sweep_prints_one_row_per_column_count():
    from llmint8.tools.bench import run_bench

    table = run_bench(device="cpu", quick=True, outliers=True)
    rows = [line for line in table.splitlines() if line.startswith("| 1024×")]
    k = CPU_SHAPES[0][0]
    assert [int(row.split("|")[3]) for row in rows] == columns_swept(k)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert int(cells[3]) >= int(cells[2])  # C seen >= C planted
        assert float(cells[-2]) < 0.05  # relative error of ours


def test_the_sweep_takes_the_row_counts_it_is_given():
    from llmint8.tools.bench import run_bench

    table = run_bench(device="cpu", quick=True, outliers=True, rows=[3, 5])
    rows = [line for line in table.splitlines() if line.startswith("| 1024×")]
    k = CPU_SHAPES[0][0]
    assert [int(row.split("|")[2]) for row in rows] == [3] * len(columns_swept(k)) + [5] * len(
        columns_swept(k)
    )
