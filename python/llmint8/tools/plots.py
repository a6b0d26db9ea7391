"""Charts (matplotlib, PNG): the speed-up chart of a `llmint8 bench` table, and the per-layer
view of `llmint8 inspect` with the outlier-feature heatmap of a calibrated checkpoint."""

from __future__ import annotations

import argparse
import math
from collections import defaultdict


def parse_table(table: str) -> tuple[str, dict[str, list[dict[str, float]]]]:
    """The title line and, per layer shape, the rows of a benchmark markdown table (its text, or
    the path of a file holding it) as {column: value}."""
    if "\n" not in table:
        with open(table) as f:
            table = f.read()
    lines = table.splitlines()
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
        raise ValueError("no markdown table found")
    return title, dict(layers)


def _pyplot():
    from .._optional import require

    matplotlib = require("matplotlib", "--plot")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png) -> None:
    from .outputs import write_atomically

    write_atomically(png, lambda path: fig.savefig(path, dpi=110, format="png"))


def plot_speedup(table: str, png) -> None:
    """One panel per layer shape: llmint8's (threshold 6) speed-up over the floating-point layer
    (eager, and CUDA-graph replayed where measured) and over bitsandbytes where measured."""
    plt = _pyplot()
    title, layers = parse_table(table)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.8), squeeze=False)
    for ax, (shape, rows) in zip(axes[0], layers.items()):
        m = [r["M"] for r in rows]
        baseline = "fp16" if "fp16" in rows[0] else "fp32"
        series = {f"vs {baseline} (eager)": [r[baseline] / r["ours t=6"] for r in rows]}
        if "ours t=6 graph" in rows[0]:
            series[f"vs {baseline} (CUDA graph)"] = [
                r[f"{baseline} graph"] / r["ours t=6 graph"] for r in rows
            ]
        if "bnb t=6" in rows[0] and not all(math.isnan(r["bnb t=6"]) for r in rows):
            series["vs bitsandbytes t=6 (eager)"] = [r["bnb t=6"] / r["ours t=6"] for r in rows]
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
    _save(fig, png)
    plt.close(fig)


def plot_inspection(report, png) -> None:
    """Per-layer weight quantization error and calibrated outlier columns; for a calibrated
    checkpoint also the heatmap layer × feature of how often each feature was an outlier."""
    plt = _pyplot()
    names, heat = report.outlier_heatmap()
    heights = [1.0, 1.0] + ([max(1.0, len(names) / 10)] if len(names) else [])
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(11, 3.4 * sum(heights)), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    labels = [layer.name for layer in report.layers]
    x = range(len(labels))
    ax = axes[0][0]
    ax.bar(x, [layer.weight_error for layer in report.layers], color="tab:blue")
    estimated = " (estimated from the row scales)" if report.quantized else ""
    ax.set_ylabel("relative weight error")
    ax.set_title(f"int8 weight quantization error per layer{estimated}", fontsize=10)
    ax = axes[1][0]
    ax.bar(x, [layer.outlier_columns or 0 for layer in report.layers], color="tab:red")
    ax.set_ylabel("static outlier columns")
    ax.set_title(
        "calibrated outlier columns per layer"
        if report.calibrated else "no calibrated outlier columns in this checkpoint",
        fontsize=10,
    )  # fmt: skip
    for ax in (axes[0][0], axes[1][0]):
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
    if len(names):
        ax = axes[2][0]
        image = ax.imshow(
            heat, aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=1
        )
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=6)
        ax.set_xlabel("feature dimension (layer input column)")
        ax.set_title("share of calibration batches in which each feature held |x| ≥ threshold",
                     fontsize=10)  # fmt: skip
        fig.colorbar(image, ax=ax, fraction=0.03)
    fig.suptitle(report.path, fontsize=9)
    fig.tight_layout()
    _save(fig, png)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Speed-up chart of a benchmark table")
    parser.add_argument("table", help="markdown table from `llmint8 bench --out`")
    parser.add_argument("png", help="where to write the chart")
    args = parser.parse_args(argv)
    plot_speedup(args.table, args.png)


if __name__ == "__main__":
    main()
