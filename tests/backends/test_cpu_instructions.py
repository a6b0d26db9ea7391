"""LLMINT8_CPU_INSTRUCTIONS: the core's paths for a CPU with fewer instructions (AVX2 at most, or
none past x86-64's baseline), run on this one. Each cap must give the native path's bits: the
exact int32 sums, the same float operations after them."""

import os
import subprocess
import sys

import pytest

from llmint8.backends import cpu

ENV = cpu.CPU_INSTRUCTIONS_ENV

# Prints the product kernel the cap leaves, then a digest of LLM.int8() outputs (float32 and
# bfloat16 inputs, thresholds 0 and 6 with planted outlier columns, with and without a bias) and
# of exact int8 products, over shapes that take every path: one row, a few, AMX's and VNNI's
# tiles and panels, K not a multiple of 64, weights past the core's in-cache size, more rows than
# a chunk of transposed sums.
SCRIPT = """
import hashlib
import torch
from llmint8 import _core
from llmint8 import functional as F

digest = hashlib.sha256()
generator = torch.Generator().manual_seed(0)
shapes = [(1, 512, 300), (2, 640, 130), (3, 1100, 70), (5, 1024, 600), (40, 128, 1000),
          (20, 1100, 9), (400, 96, 33), (300, 1100, 20)]
for m, k, n in shapes:
    weight = torch.randn(n, k, generator=generator)
    CB, SCB = F.quantize_weight(weight)
    bias = torch.randn(n, generator=generator)
    x = torch.randn(m, k, generator=generator)
    x[:, ::37] *= 20
    for dtype in (torch.float32, torch.bfloat16):
        for threshold in (0.0, 6.0):
            for b in (None, bias.to(dtype)):
                out = F.int8_linear(x.to(dtype), CB, SCB, b, threshold)
                digest.update(out.float().numpy().tobytes())
    a = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
    digest.update(_core.int8_product(a.numpy(), CB.numpy()).tobytes())
print(_core.int8_product_kernel())
print(digest.hexdigest())
"""


def _run(cap):
    env = dict(os.environ)
    env.pop(ENV, None)
    if cap is not None:
        env[ENV] = cap
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )


def test_each_cap_gives_the_native_bits():
    native = _run(None)
    assert native.returncode == 0, native.stderr
    kernel, digest = native.stdout.split()
    for cap, allowed in (("avx2", {"avx2", "portable"}), ("portable", {"portable"})):
        capped = _run(cap)
        assert capped.returncode == 0, capped.stderr
        capped_kernel, capped_digest = capped.stdout.split()
        assert capped_kernel in allowed, (cap, capped_kernel)
        assert capped_digest == digest, f"{cap} ({capped_kernel}) against native ({kernel})"


def test_an_unknown_cap_is_a_clear_error():
    result = _run("avx512")
    assert result.returncode != 0
    assert "ValueError" in result.stderr and ENV in result.stderr, result.stderr
    assert '"native", "avx2" or "portable"' in result.stderr, result.stderr


def test_native_is_the_default():
    if os.environ.get(ENV, "native") != "native":
        pytest.skip(f"{ENV} is set for this run")
    assert cpu.CPU_INSTRUCTIONS == "native"
