"""Smoke test of an installed llmint8 (run from outside the source tree, e.g. on a fresh wheel)."""

import pathlib
import sys
import tempfile

import torch
from torch import nn

import llmint8

print("llmint8", llmint8.__version__, "from", pathlib.Path(llmint8.__file__).parent)
torch.manual_seed(0)
model = llmint8.replace_linear(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)))
model = model.to("cpu")
assert model[0].weight.dtype == torch.int8, "weights were not quantized on .to()"
x = torch.randn(4, 64, dtype=torch.float16)
x[:, 5] *= 30
y = model(x)
with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "smoke.safetensors"
    llmint8.save_quantized(model, path)
    fresh = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    reloaded = llmint8.load_quantized(fresh, path)
    assert torch.equal(reloaded(x), y), "reloaded model differs"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        llmint8.load_quantized(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)), path)
    except llmint8.FormatError as err:
        print("corrupted copy refused:", err)
    else:
        sys.exit("a corrupted file loaded")
kernels = sorted(p.name for p in (pathlib.Path(llmint8.__file__).parent / "kernels").glob("*.cu"))
assert kernels, "the CUDA kernels are missing from the installed package"
print("kernels shipped:", ", ".join(kernels))
print("smoke test passed")
