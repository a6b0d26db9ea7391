# NOTES v61 on the device: `git apply benches/attempts/v61/split-pairs.patch`, build the wheel into
# .whl, carry .whl and .whl-hf, then `bash benches/attempts/v61/run.sh`.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-hf/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 300 python3 -m pytest -q -x -p no:cacheprovider -m gpu tests/backends/test_cuda.py -k "split_pairs or int8_wgmma_plans_match" 2>&1 | tail -8
timeout 240 python3 benches/attempts/v61/split_pair_ab.py ${ROWS:-32,64,128} ${SHAPES:-4096x4096,11008x4096,2048x4096}
