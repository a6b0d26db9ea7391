# v38 first run (branch v38-int8-tokens-a checked out; wheel built from it into .whl-main):
#   rm -f .whl-main/*.whl && maturin build --release --out .whl-main; carry [".whl-main", "xp"]
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl-main/llmint8*.whl
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
#timeout 240 python3 -m pytest -q -m gpu tests/backends/test_cuda.py -k "int8_wgmma_plans or int8_wgmma" -p no:cacheprovider --tb=line 2>&1 | tail -25
timeout 200 python3 xp/probe_tokens.py 32 64 96 128 4096x11008 8192x28672 11008x4096 4096x4096 2>&1 | grep -v -i warn
