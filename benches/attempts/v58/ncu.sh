# NOTES v58: ncu of the 256-token tile against cuBLAS's GEMM (pair_ncu.py), then v57's two states.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site
ncu --kernel-name regex:"pair|gemm|nvjet|xmma|cutlass" --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy \
  -o $OUT/pair python3 benches/attempts/v58/pair_ncu.py > /dev/null 2>&1
ncu --import $OUT/pair.ncu-rep --page details --print-units base > $OUT/pair.txt 2>&1
grep -E "^  [a-z_0-9]+<|^  [a-zA-Z_0-9]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|L1/TEX Hit|L2 Hit|DRAM Throughput|Issued Warp|No Eligible|Stall|Registers Per|Achieved Occupancy|Block Size|Grid Size|Cluster|Waves|Shared Memory Config" $OUT/pair.txt | cut -c1-150 | head -90
timeout 200 ncu --kernel-name regex:weight_only_linear --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section LaunchStats --section Occupancy --section WarpStateStats --cache-control none --clock-control none \
  -o $OUT/two_states python3 benches/attempts/v57/two_states_ncu.py > /dev/null 2>&1
ncu --import $OUT/two_states.ncu-rep --page details --print-units base > $OUT/two_states.txt 2>&1
grep -E "Duration|L1/TEX Hit|L2 Hit|DRAM Throughput|Memory Throughput|Achieved Occupancy|Shared Memory Config|Issued Warp|Dynamic Shared" $OUT/two_states.txt | cut -c1-120 | head -60
