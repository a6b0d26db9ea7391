"""Edits an installed cuda.py of e82248b to what v47 shipped: the tensor maps of the int8
activations and Xo over whole token tiles, and the workspace rows rounded up to 128 (room for
them). usage: python benches/attempts/v47/pad_maps.py PATH/llmint8/backends/cuda.py"""

import sys
from pathlib import Path

path = Path(sys.argv[1])
source = path.read_text()
EDITS = [
    ("x_map = tensor_map_at(ops.a, torch.int8, m, k,", "x_map = tensor_map_at(ops.a, torch.int8, "
     "_ceil(m, tokens) * tokens, k,", 2),
    ("return tensor_map_at(ops.xc, dtype, m, k,", "return tensor_map_at(ops.xc, dtype, "
     "_ceil(m, tokens) * tokens, k,", 1),
    ("absmax = _ceil(m * k, 256) * 256", "absmax = _ceil(_ceil(m, 128) * 128 * k, 256) * 256", 1),
    ("wc = _ceil(xc + itemsize * m * ldc, 256) * 256",
     "wc = _ceil(xc + itemsize * _ceil(m, 128) * 128 * ldc, 256) * 256", 1),
]  # fmt: skip
for old, new, count in EDITS:
    assert source.count(old) == count, old
    source = source.replace(old, new)
path.write_text(source)
print("padded", path)
