"""Where int8_wgmma_tokens.cu's outputs differ from the CPU backend's (benches/NOTES.md v42): the
share of differing outputs, their rows and weight-row blocks, and whether a residual is one
outlier chunk's contribution missing or doubled. Forces the tokens plan (tokens, weight rows,
splits) on a GPU that runs it; run from the repository root with the wheel installed."""

import torch

from llmint8 import functional as F
from llmint8.backends import cpu as cpu_backend
from llmint8.backends import cuda as cuda_backend


def forward(x, CB, SCB, plan):
    saved = cuda_backend.plan
    cuda_backend.plan = lambda *args, **kwargs: plan
    cuda_backend._layouts.clear()
    try:
        return cuda_backend.int8_linear(x.cuda(), CB.cuda(), SCB.cuda(), None, 6.0, None)
    finally:
        cuda_backend.plan = saved
        cuda_backend._layouts.clear()


def check(m, k, n, c, tokens, rows, splits=1, runs=False):
    generator = torch.Generator().manual_seed(c + m)
    x = torch.randn(m, k, generator=generator)
    columns = torch.arange(c) if runs else torch.randperm(k, generator=generator)[:c]
    x[:, columns] *= 40
    x = x.half()
    CB, SCB = F.quantize_weight(torch.randn(n, k, generator=generator).half())
    plan = cuda_backend.Plan("wgmma", tokens, splits, 0, rows)
    got = forward(x, CB, SCB, plan).float().cpu()
    again = forward(x, CB, SCB, plan).float().cpu()
    expected = cpu_backend.int8_linear(x, CB, SCB, None, 6.0, None).float()
    residual = got - expected
    tolerance = 0.02 * expected.abs().mean()
    bad = residual.abs() > tolerance
    listed = (x.abs() > 6).any(0).nonzero().flatten()
    print(
        f"{m}x{k}x{n} C={c} (seen {len(listed)}) plan {tokens}/{rows}/{splits} runs={runs}: "
        f"differing {bad.float().mean():.4f}, deterministic {torch.equal(got, again)}, "
        f"NaN {got.isnan().any().item()}",
        flush=True,
    )
    if not bad.any():
        return
    blocks = (bad.any(0).nonzero().flatten() // rows).unique()
    print("  rows", bad.any(1).nonzero().flatten().tolist()[:40], "blocks", blocks.tolist()[:20])
    xc = x[:, listed].double()
    wc = CB[:, listed].double() * SCB.double()[:, None] / 127
    for chunk in range(-(-len(listed) // 64)):
        part = slice(64 * chunk, 64 * chunk + 64)
        contribution = xc[:, part] @ wc[:, part].T
        for sign in (1, -1):
            match = ((residual.double() - sign * contribution).abs() < tolerance) & bad
            share = match.float().sum() / bad.float().sum()
            if share > 0.5:
                print(f"  residual = {sign:+d} x chunk {chunk} on {share:.2f} of them")


if __name__ == "__main__":
    for c in (6, 64, 512, 4096):
        check(32, 4096, 11008, c, 64, 96)
    check(32, 4096, 11008, 4096, 64, 96, runs=True)
    check(32, 4096, 11008, 512, 64, 96, runs=True)
    check(128, 4096, 11008, 4096, 128, 96)
    check(128, 4096, 11008, 6, 128, 128)
    check(16, 1024, 512, 3, 64, 96)
    check(16, 1024, 512, 70, 64, 96)
    check(16, 1024, 512, 70, 64, 96, splits=2)
