"""v38: LLM.int8() forced (threshold 6, 6 planted outlier columns; and threshold 0) under the
shipped int8_wgmma.cu plan and every int8_wgmma_tokens.cu plan, graph-replayed over cold weight
copies with dependent launch as shipped (kernel_choice.py's helpers), beside fp16."""
import sys
from functools import partial

import torch

sys.path.insert(0, "benches")
import kernel_choice as kc  # noqa: E402

import llmint8  # noqa: E402
from llmint8.backends import cuda as backend  # noqa: E402


def timed(plan_, call, CBs, x):
    shipped = backend.plan
    if plan_ is not None:
        backend.plan = lambda *a, _p=plan_, **kw: _p
    backend._layouts.clear()
    try:
        return kc.graph_time_us(kc.cycling(call, CBs), x)
    finally:
        backend.plan = shipped
        backend._layouts.clear()


def main():
    rows = [int(a) for a in sys.argv[1:] if "x" not in a] or [64, 128]
    shapes = [tuple(int(v) for v in a.split("x")) for a in sys.argv[1:] if "x" in a] or kc.GRID
    index = torch.cuda.current_device()
    print("| K×N | M | fp16 | shipped t=6 / t=0 | tokens best t=6 (tokens/rows/splits) | t=0 | others t=6 |")
    print("|---|---|---|---|---|---|---|")
    for k, n in shapes:
        SCB, bias, CBs, fp16_call, _ = kc.cold_layer(k, n)
        for m in rows:
            x = kc.planted_input(m, k)
            calls = {t: partial(llmint8.functional.int8_linear, SCB=SCB, bias=bias, threshold=t,
                                arithmetic="int8") for t in (6.0, 0.0)}
            fp16 = kc.graph_time_us(fp16_call, x)
            shipped = [timed(None, calls[t], CBs, x) for t in (6.0, 0.0)]
            results = []
            for rows_, consumers, _ in backend.INT8_TOKENS_TILES:
                tokens = 64 * consumers
                if (tokens >= 2 * m and consumers > 1) or (consumers == 1 and m > 64):
                    continue
                for splits in backend.WGMMA_SPLITS:
                    blocks = -(-m // tokens) * -(-n // rows_) * splits
                    if blocks > 264 or (splits > 1 and blocks > 140):
                        continue
                    plan_ = backend.Plan("wgmma", tokens, splits, 0, rows_)
                    results.append((timed(plan_, calls[6.0], CBs, x), plan_))
            results.sort(key=lambda r: r[0])
            t6, best = results[0]
            t0 = timed(best, calls[0.0], CBs, x)
            others = ", ".join(f"{p.tile_rows}/{p.weight_rows}/{p.splits} {t:.1f}" for t, p in results[1:4])
            print(f"| {k}×{n} | {m} | {fp16:.1f} | {shipped[0]:.1f} / {shipped[1]:.1f} | **{t6:.1f}** "
                  f"({best.tile_rows}/{best.weight_rows}/{best.splits}) | {t0:.1f} | {others} |", flush=True)
        torch.cuda.empty_cache()
    del index


main()
