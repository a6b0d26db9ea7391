# NOTES v58: the whole GPU suite on the wheel in .whl, then the outlier sweep at prefill rows.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-hf/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site
timeout 330 python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | grep -v "^[0-9.]*s \|^$" | tail -12
timeout 220 python3 benches/linear.py --outliers --rows 512 2048 --shapes ${SHAPES:-4096x11008 8192x28672} --out $OUT/outliers.md 2>&1 | tail -30
