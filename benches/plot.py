"""Speed-up chart from a table written by `benches/linear.py --out`:

    python benches/plot.py benches/results-h100.md benches/results-h100.png

One panel per layer shape: llmint8 (threshold 6) speed-up over fp16 nn.Linear (eager and
graph-replayed) and over bitsandbytes Linear8bitLt (threshold 6, eager), against tokens M.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict


def parse_table(path: str) -> tuple[str, dict[str, list[dict[str, float]]]]:
    """The title line and, per layer shape, the rows of the markdown table as {column: value}."""
    with open(path) as f:
        lines = f.read().splitlines()
    title = lines[0] if lines else ""
    header: list[str] = []
    layers: dict[str, list[dict[str, float]]] = defaultdict(list)
    for line in lines:
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not header:
            header = cells
            continue
        row: dict[str, float] = {}
        for name, cell in zip(header[1:], cells[1:]):
            try:
                row[name] = float(cell.rstrip("×")) if cell else math.nan
            except ValueError:
                row[name] = math.nan
        layers[cells[0]].append(row)
    if not header:
        raise ValueError(f"{path}: no markdown table found")
    return title, dict(layers)


def plot(table: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, layers = parse_table(table)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.8), squeeze=False)
    for ax, (shape, rows) in zip(axes[0], layers.items()):
        m = [r["M"] for r in rows]
        series = {
            "vs fp16 (eager)": [r["fp16"] / r["ours t=6"] for r in rows],
            "vs fp16 (CUDA graph)": [r["fp16 graph"] / r["ours t=6 graph"] for r in rows],
            "vs bitsandbytes t=6 (eager)": [r["bnb t=6"] / r["ours t=6"] for r in rows],
        }
        for label, values in series.items():
            ax.plot(m, values, marker="o", label=label)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_title(f"K×N = {shape}")
        ax.set_xlabel("tokens M")
        ax.set_ylabel("speed-up of llmint8 (threshold 6)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title.split(";")[0], fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="markdown table from benches/linear.py --out")
    parser.add_argument("png", help="where to write the chart")
    args = parser.parse_args(argv)
    plot(args.table, args.png)


if __name__ == "__main__":
    main()
