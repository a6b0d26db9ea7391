# NOTES v57, with quantize-clusters.patch applied to the tree (its tests) and built into .whl:
# the quantize kernel's tests on that wheel, then the forward's timeline
# (timeline.py) with main's wheel (.whl-base) and the new one with each row over one block
# (LLMINT8_QUANTIZE_SPLIT=0: the mask word preloaded only) and over a cluster of blocks (the new
# default), alternating twice. S = shapes, R = rows (timeline.py's arguments).
set -e
for w in base new; do
  src=$([ $w = base ] && echo .whl-base || echo .whl)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site-$w $src/*.whl .whl-hf/*.whl
done
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
PYTHONPATH=/tmp/site-new python3 -m pytest -q -m gpu -p no:cacheprovider tests/backends/test_cuda.py \
  -k quantize 2>&1 | tail -3
S=${S:-4096x11008,11008x4096,8192x28672,4096x4096}
R=${R:-32,128}
for round in 1 2; do
  for v in base new0 new1; do
    echo "== round $round: $v"
    site=/tmp/site-${v%[01]}
    LLMINT8_QUANTIZE_SPLIT=${v#new} PYTHONPATH=$site python3 benches/attempts/v57/timeline.py $S $R
  done
done
