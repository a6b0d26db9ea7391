# How NOTES v53's probes ran on the device (the wheel of the commit with the four-token ring tile
# installed in /tmp/site).
# The four-token ring tile in the plan from 17 rows: off (the plan before), 4 stages, 3 stages.
A=benches/attempts/v53/weight_only_ab.py
S=4096x4096,2048x4096,4096x3072
RING4=off python3 $A base 17,24,32 $S fp16
python3 $A r4 17,24,32 $S
RING4=2,4,1,1,3 python3 $A r3 17,24,32 $S
# 16 warps per block (512 threads): a copy of the installed package with weight_only_linear.cu's
# THREADS doubled and ring tiles of 2-3 stages instantiated, against the shipped 8-warp tiles.
P=benches/attempts/v53/warps_probe.py
rm -rf /tmp/site-w16 && cp -r /tmp/site /tmp/site-w16
K=/tmp/site-w16/llmint8/kernels/weight_only_linear.cu
sed -i 's/^constexpr int THREADS = 256, WARPS/constexpr int THREADS = 512, WARPS/' $K
sed -i 's/ INSTANTIATE(T, 2, 4, 1, 1, true, 4) \\$/ \\/' $K  # 16 warps' sums exceed 48 KB
sed -i 's/^  INSTANTIATE(T, 2, 4, 1, 1, true, 3)$/  INSTANTIATE(T, 2, 2, 1, 1, true, 3) \\\n  INSTANTIATE(T, 2, 2, 1, 1, true, 2) INSTANTIATE(T, 1, 2, 1, 1, true, 3)/' $K
sed -n "/^#define INSTANTIATE_STAGED/,/^INSTANTIATE_TILES(__half, true)/p" $K
S16=4096x4096,11008x4096,4096x11008
WARPS=16 PYTHONPATH=/tmp/site-w16 python3 $P w16 9,16 $S16 2,2,1,1,3/2,2,1,1,2/1,2,1,1,3/2,2,1,1,0
python3 $P w8b 16 $S16 2,2,1,1,4
# Not yet run (the device was taken back): sixteen-warps.patch (applies to main at the commit that
# adds this file) as a wheel in /tmp/site, its GPU tests, then the plan before (LONG=off) against
# the 16-warp ring on weights of long rows at 9-16 rows.
# python3 -m pytest -q -m gpu tests/backends/test_cuda.py tests/backends/test_cuda_prepared.py \
#   tests/backends/test_dependent_launch.py tests/test_weight_only.py \
#   -k "weight_only or auto or plan or prepared or dependent or graph"
# S=11008x4096,14336x4096,8192x4096,4096x4096
# LONG=off python3 $A base 9,12,16 $S fp16; python3 $A long 9,12,16 $S; LONG=off python3 $A base2 16 $S
