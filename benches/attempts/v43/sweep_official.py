"""benches/linear.py --outliers --rows 32 128, restricted to the int8_wgmma.cu shapes."""

import torch

from llmint8.tools import bench_outliers as b

b.GPU_SHAPES = [(4096, 4096), (11008, 4096)]
for line in b.outlier_sweep_table(torch.device("cuda"), False, [32, 128]):
    print(line, flush=True)
