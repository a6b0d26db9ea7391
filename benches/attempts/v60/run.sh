# NOTES v60 on the device: `git apply benches/attempts/v60/persistent-pair.patch`, build the wheel
# into .whl, carry .whl and .whl-hf, then `bash benches/attempts/v60/run.sh`.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-hf/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 240 python3 -m pytest -q -x -p no:cacheprovider -m gpu tests/backends/test_cuda.py -k "pair_loop or (int8_wgmma_plans_match and 256)" 2>&1 | tail -8
timeout 300 python3 benches/attempts/v60/loop_ab.py ${ROWS:-512,2048,4096} ${SHAPES:-4096x4096,4096x11008,11008x4096,8192x28672}
