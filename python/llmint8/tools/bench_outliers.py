"""`llmint8 bench --outliers`: how the cost of an int8 layer grows with the number C of outlier
columns in its input, against the floating-point layer (and bitsandbytes at threshold 6, where
installed), measured in one run.

The input is standard normal with C distinct columns scaled ×40 (every element of those columns
then passes the threshold 6 with probability ≈0.88, and the column is an outlier in any batch of
a few rows); C sweeps 0, 6, 64, 512, K/4 and K. LLM.int8() computes those columns in floating
point: the target is that this costs about what the floating-point product over C columns does,
so that an int8 layer is never slower than the floating-point one plus a small constant.

Columns: `fp` the floating-point nn.Linear (fp16 on a GPU, fp32 on the CPU) eager and (GPU)
graph-replayed, `ours t=6` (LLM.int8() forced: ``arithmetic="int8"``) eager and (GPU)
graph-replayed, `default graph` the default layer (``arithmetic="auto"``: weight-only for few
rows, where no column is an outlier), `bnb t=6` eager, `vs fp` = fp / ours t=6 eager and `graph vs
fp` = fp graph / ours t=6 graph (above 1: faster), `C seen` the outlier columns the layer found (at
least C), and relative errors against the fp output.
µs per call, medians.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

GPU_SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096), (8192, 28672)]
GPU_ROWS = [1, 16, 2048]
CPU_SHAPES = [(1024, 2816)]
CPU_ROWS = [16, 256]
SCALE = 40.0


def columns_swept(k: int) -> list[int]:
    return sorted({0, 6, 64, 512, k // 4, k} & set(range(k + 1)))


def inputs_with_outliers(m: int, k: int, c: int, device, dtype, generator) -> torch.Tensor:
    x = torch.randn(m, k, generator=generator).to(device=device, dtype=dtype)
    columns = torch.randperm(k, generator=generator)[:c].to(device)
    x[:, columns] *= SCALE
    return x


def outlier_sweep_table(device: torch.device, quick: bool, rows=None, shapes=None) -> list[str]:
    """The sweep's table on `device` (`quick`: its first row count only; `rows`: these row
    counts instead of the sweep's; `shapes`: these (K, N) weight shapes instead of its own)."""
    from .bench import _table, bnb_layer, graph_us, host_median_us, median_us, ours, rel_error

    gpu = device.type == "cuda"
    shapes = shapes or (GPU_SHAPES if gpu else CPU_SHAPES)
    if rows is None:
        rows = (GPU_ROWS if gpu else CPU_ROWS)[:1] if quick else (GPU_ROWS if gpu else CPU_ROWS)
    dtype = torch.float16 if gpu else torch.float32
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    title = f"{name}; outlier-column sweep (columns ×{SCALE:g}); µs per call (median)"
    header = (
        "| K×N | M | C | C seen | fp | fp graph | ours t=6 | ours t=6 graph | default graph | "
        "bnb t=6 | vs fp | graph vs fp | err default | err ours | err bnb |"
    )
    generator = torch.Generator().manual_seed(0)

    def timed(fn):
        if gpu:
            return median_us(fn)
        return host_median_us(fn)

    def rows_for(k, n):
        linear = nn.Linear(k, n).to(device=device, dtype=dtype)
        layer = ours(linear, 6.0, device, arithmetic="int8")
        default = ours(linear, 6.0, device)
        bnb = bnb_layer(linear, 6.0) if gpu else None
        for m in rows:
            for c in columns_swept(k):
                x = inputs_with_outliers(m, k, c, device, dtype, generator)
                with torch.no_grad():
                    reference = linear(x)
                    seen = int(((x.abs() >= 6.0).any(dim=0)).sum())
                    t_fp, t_ours = timed(partial(linear, x)), timed(partial(layer, x))
                    g_fp = graph_us(partial(linear, x)) if gpu else float("nan")
                    g_ours = graph_us(partial(layer, x)) if gpu else float("nan")
                    g_default = graph_us(partial(default, x)) if gpu else float("nan")
                    t_bnb = timed(partial(bnb, x)) if bnb is not None else float("nan")
                    e_ours = rel_error(layer(x), reference)
                    e_default = rel_error(default(x), reference)
                    e_bnb = rel_error(bnb(x), reference) if bnb is not None else float("nan")
                yield (
                    f"| {k}×{n} | {m} | {c} | {seen} | {t_fp:.1f} | {g_fp:.1f} | {t_ours:.1f} | "
                    f"{g_ours:.1f} | {g_default:.1f} | {t_bnb:.1f} | {t_fp / t_ours:.2f}× | "
                    f"{g_fp / g_ours:.2f}× | {e_default:.4f} | {e_ours:.4f} | {e_bnb:.4f} |"
                )
        del linear, layer, default, bnb
        if gpu:
            torch.cuda.empty_cache()

    return _table(title, header, rows_for, shapes)
