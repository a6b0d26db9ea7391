"""v38: "auto"'s boundary on weights whose int8 blocks fill the GPU: LLM.int8() (t=6, 6 planted
outlier columns) against weight-only, graph-replayed over cold weight copies, beside fp16."""
import sys
from functools import partial

import torch

sys.path.insert(0, "benches")
import kernel_choice as kc  # noqa: E402

import llmint8  # noqa: E402

rows = [int(a) for a in sys.argv[1:] if "x" not in a]
shapes = [tuple(int(v) for v in a.split("x")) for a in sys.argv[1:] if "x" in a]
print("| K×N | M | fp16 | int8 t=6 | weight-only | auto |")
print("|---|---|---|---|---|---|")
for k, n in shapes:
    SCB, bias, CBs, fp16_call, _ = kc.cold_layer(k, n)
    for m in rows:
        x = kc.planted_input(m, k)
        t = {a: kc.graph_time_us(kc.cycling(partial(llmint8.functional.int8_linear, SCB=SCB, bias=bias,
                                                    threshold=6.0, arithmetic=a), CBs), x)
             for a in ("int8", "weight_only", "auto")}
        print(f"| {k}×{n} | {m} | {kc.graph_time_us(fp16_call, x):.1f} | {t['int8']:.1f} | "
              f"{t['weight_only']:.1f} | {t['auto']:.1f} |", flush=True)
    torch.cuda.empty_cache()
