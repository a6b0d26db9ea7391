#!/usr/bin/env bash
# On the GPU machine: install the carried wheels (llmint8's and bitsandbytes'), run the whole test
# suite (GPU tests included) and the layer benchmark. Results go to $OUT when it is set.
#   bash scripts/gpu-check.sh [--quick]
set -uo pipefail
out="${OUT:-/tmp/llmint8-gpu}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, cupy, llmint8; print('torch', torch.__version__, 'cupy', cupy.__version__, 'llmint8', llmint8.__version__)"
python3 -m pytest tests -q --maxfail=5 -p no:cacheprovider 2>&1 | tee "$out/pytest.log" | tail -40
status=${PIPESTATUS[0]}
echo "pytest exit status: $status"
python3 benches/host_overhead.py 2>&1 | tee "$out/host.log" | grep -E "host time|regs" | head -40
python3 benches/linear.py "$@" --out "$out/linear.md" 2> "$out/bench.err"
echo "bench exit status: $?"
tail -5 "$out/bench.err"
exit "$status"
