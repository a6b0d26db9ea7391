"""`python benches/attempts/v51/hand_over_parts.py`: the C = 0 / 6 cost of the hand-over's
parts, graph-replayed µs per forward. A: off; B: on; C: on without the int8 kernel's early wait
(weight_only_above -1 there: only the gated weight-only launch); D: on without the weight-only
launch (only the int8 kernel's early wait)."""

import functools

import torch

from llmint8 import functional as F
from llmint8.backends import cuda as cb
from llmint8.tools.bench import graph_us

torch.manual_seed(0)


def auto_forward(x, CB, SCB, bias):
    return F.int8_linear(x, CB, SCB, bias, threshold=6.0, arithmetic="auto")


orig_tokens, orig_call = cb._int8_tokens_launch, cb._int8_call


def no_early_wait(index, m, n, k, ops, plan_, dtype_name):
    return orig_tokens(index, m, n, k, ops._replace(weight_only_above=-1), plan_, dtype_name)


def no_gated_launch(*a, **kw):
    call = orig_call(*a, **kw)
    auto = kw.get("auto", a[9] if len(a) > 9 else False)
    return call._replace(steps=call.steps[:-1]) if auto else call


for k, n, rows in [(4096, 11008, (64, 128)), (8192, 28672, (32, 128))]:
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    CB, SCB = F.quantize_weight(w)
    bias = torch.randn(n, device="cuda", dtype=torch.float16)
    del w
    for m in rows:
        for c in (0, 6):
            x = torch.randn(m, k, device="cuda", dtype=torch.float16)
            x[:, torch.randperm(k, device="cuda")[:c]] *= 40.0
            res = {}
            for name in "ABCDAB":
                cb._HAND_OVER = name != "A"
                cb._int8_tokens_launch = no_early_wait if name == "C" else orig_tokens
                cb._int8_call = no_gated_launch if name == "D" else orig_call
                t = graph_us(functools.partial(auto_forward, x, CB, SCB, bias))
                res.setdefault(name, []).append(t)
            cb._HAND_OVER, cb._int8_tokens_launch, cb._int8_call = True, orig_tokens, orig_call
            print(
                f"{k}x{n} m={m} C={c}: "
                + " ".join(f"{n_}={'/'.join(f'{v:.1f}' for v in vs)}" for n_, vs in res.items()),
                flush=True,
            )
