# How NOTES v52's kernel variants were timed on the device (a wheel of the commit each patch
# applies to, installed in /tmp/site; each variant a copy of it with one kernel header edited).
# L2 prefetches (l2-prefetch.patch, applies to de40562): D chunks ahead, bulk or per-lane.
S=4096x4096,4096x11008,11008x4096,8192x28672
A=benches/attempts/v52/weight_only_ab.py
PYTHONPATH=/tmp/site python3 $A p0 1,16 $S fp16
for D in 2 4 8; do
  rm -rf /tmp/site-p$D && cp -r /tmp/site /tmp/site-p$D
  sed -i "s/^#define LLMINT8_WEIGHT_PREFETCH 0/#define LLMINT8_WEIGHT_PREFETCH $D/" \
    /tmp/site-p$D/llmint8/kernels/weight_only.cuh
  PYTHONPATH=/tmp/site-p$D python3 $A p$D 1,16 $S
  rm -rf /tmp/site-l$D && cp -r /tmp/site-p$D /tmp/site-l$D
  sed -i "s/^#define LLMINT8_WEIGHT_PREFETCH $D/&\n#define LLMINT8_WEIGHT_PREFETCH_LSU/" \
    /tmp/site-l$D/llmint8/kernels/weight_only.cuh
  PYTHONPATH=/tmp/site-l$D python3 $A l$D 1,16 $S
done
# Early output scales (early-output-scales.patch, applies to de40562): its wheel against a copy
# with main's three weight-only sources, alternating, rows 1, 8, 16.
# The narrow ring (shipped): RING2=1,2,1,1,4 against the plan before it, rows 9, 12, 16.
PYTHONPATH=/tmp/site python3 $A base 9,12,16 4096x4096,11008x4096,4096x2048,11008x2048 fp16
RING2=1,2,1,1,4 PYTHONPATH=/tmp/site python3 $A r1214 9,12,16 4096x4096,11008x4096,4096x2048,11008x2048
