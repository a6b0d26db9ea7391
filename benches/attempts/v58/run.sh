# NOTES v58 on the device: the wheel in .whl (with the 256-token tile) and .whl-hf carried.
# `bash benches/attempts/v58/run.sh [tests|ab|all]`
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-hf/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site
what=${1:-all}
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
if [ "$what" != ab ]; then
  timeout 300 python3 -m pytest -q -x -p no:cacheprovider -m gpu tests/backends/test_cuda.py -k "int8_wgmma_plans_match and 256" 2>&1 | tail -15
  timeout 200 python3 -m pytest -q -x -p no:cacheprovider -m gpu tests/backends/test_cuda_hand_over.py -k "256" 2>&1 | tail -8
fi
if [ "$what" != tests ]; then
  timeout ${AB_LIMIT:-300} python3 benches/attempts/v58/pair_ab.py ${ROWS:-512,2048,4096} ${SHAPES:-4096x4096,4096x11008,11008x4096,8192x28672}
fi
