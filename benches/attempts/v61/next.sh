# The next device session's first call (NOTES v59's step 1, v60's and v61's patches), one script:
# carry .whl (main's wheel), .whl-v60 and .whl-v61 (main's tree with each patch applied, built by
# `git apply PATCH && maturin build --release -o DIR`, then reverted). Each patch's tests run from
# a copy of the tree with it applied.
set -u
for v in main v60 v61; do
  dir=.whl; [ $v != main ] && dir=.whl-$v
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-$v $dir/*.whl >/dev/null 2>&1
done
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
echo "== 1. where t6 - t0 goes at prefill rows (main)"
PYTHONPATH=/tmp/site-main timeout 150 python3 benches/attempts/v57/timeline.py 4096x4096,4096x11008,11008x4096,8192x28672 2048,4096
for v in v60 v61; do
  echo "== $v"
  rm -rf /tmp/tree-$v && cp -r . /tmp/tree-$v
  patch=$(ls /tmp/tree-$v/benches/attempts/$v/*.patch)
  (cd /tmp/tree-$v && (git apply "$patch" 2>/dev/null || patch -p1 -s < "$patch")) || { echo "$v: patch failed"; continue; }
  test=pair_loop; [ $v = v61 ] && test=split_pairs
  (cd /tmp/tree-$v && PYTHONPATH=/tmp/site-$v timeout 200 python3 -m pytest -q -x -p no:cacheprovider -m gpu tests/backends/test_cuda.py -k "$test" 2>&1 | tail -6)
  if [ $v = v60 ]; then
    (cd /tmp/tree-$v && PYTHONPATH=/tmp/site-$v timeout 150 python3 benches/attempts/v60/loop_ab.py 2048,4096 4096x4096,4096x11008,11008x4096,8192x28672)
  else
    (cd /tmp/tree-$v && PYTHONPATH=/tmp/site-$v timeout 100 python3 benches/attempts/v61/split_pair_ab.py 64,128 4096x4096,11008x4096,2048x4096)
  fi
done
