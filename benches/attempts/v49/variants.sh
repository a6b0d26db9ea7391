# NOTES v49's source edits of the first measured form of int8_wgmma_tokens.cu's first-chunk picks
# (batched-items.patch at 74028fe: one batch of (position, row) pairs a stage over both staging
# warps): `nopick` skips the picks (wrong sums: timing only), `early` hands each stage back before
# its picks (timing only). Timed by breakdown_c.py at C = 0 / 32 / 64, 32 rows on 4096x11008.
# usage, on the device from the repository root, with that form's wheel installed at /tmp/site:
#   bash benches/attempts/v49/variants.sh
set -eu
HERE=$(dirname "$0")
PICK="          put_columns<T, BN>(ws, low, high, j, end, t, [&](int c, int r) {"
for name in nopick early; do
  rm -rf "/tmp/site-$name" && cp -r /tmp/site "/tmp/site-$name"
  NAME=$name PICK="$PICK" python3 - <<'PY'
import os
name, pick = os.environ["NAME"], os.environ["PICK"]
path = f"/tmp/site-{name}/llmint8/kernels/int8_wgmma_tokens.cu"
source = open(path).read()
assert source.count(pick) == 1
if name == "nopick":
    source = source.replace(pick, pick.replace("put_columns", "if (threadIdx.x < 0) put_columns"))
else:
    arrive = "          if (lane == 0) barrier_arrive(smem_address(&empty[slot]));\n"
    tail = "          j = end;\n          __syncwarp();\n" + arrive
    assert source.count(tail) == 1
    source = source.replace(tail, "          j = end;\n          __syncwarp();\n")
    source = source.replace(pick, arrive + pick)
open(path, "w").write(source)
PY
  echo "== $name"
  PYTHONPATH="/tmp/site-$name" SHAPES=4096x11008 ROWS=32 CS=0,32,64 python3 "$HERE/breakdown_c.py"
done
