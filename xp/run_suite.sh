# v38 plan: the GPU suite, then the layer table (carry [".whl", ".whl-hf"]; .whl's llmint8 built from this tree)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-hf/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
start=$SECONDS
timeout 250 python3 -m pytest -q -m gpu tests -p no:cacheprovider --maxfail=5 --tb=short 2>&1 | tail -15
echo "suite $((SECONDS - start)) s"
timeout 300 python3 benches/linear.py --rows 1 16 32 64 128 --out $OUT/linear.md 2>$OUT/bench.err | tail -24
tail -3 $OUT/bench.err
