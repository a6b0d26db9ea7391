"""The speed-up chart of a benchmark table is a real PNG."""

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
from llmint8.tools import plots as bench_plot

RESULTS = Path(__file__).resolve().parents[2] / "benches" / "results-h100.md"  # a real GPU run


def test_table_parses_per_layer():
    title, layers = bench_plot.parse_table(str(RESULTS))
    assert title.startswith("NVIDIA")
    assert list(layers) == ["4096×4096", "4096×11008", "11008×4096", "8192×28672"]
    assert [row["M"] for row in layers["8192×28672"]] == [1, 16, 32, 64, 128, 512, 2048, 4096]
    assert all(row["fp16"] > 0 and row["ours t=6"] > 0 for rows in layers.values() for row in rows)


def test_chart_is_a_png(tmp_path):
    png = tmp_path / "chart.png"
    bench_plot.plot_speedup(str(RESULTS), str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1000 and height > 300


def test_a_file_without_a_table_is_refused(tmp_path):
    path = tmp_path / "empty.md"
    path.write_text("no table here\n")
    with pytest.raises(ValueError, match="no markdown table"):
        bench_plot.parse_table(str(path))
