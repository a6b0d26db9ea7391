# NOTES v55, for a session with a device: unchecked-loads.patch applied to main and built into .whl,
# the wheel of main without it in .whl-base. First the weight-only GPU tests on the patched wheel
# (float64 bound, CPU, ring = register twin bits, TMA = register tile bits, NaN rows, graphs,
# prepared launches, plans), then the default forward graph-replayed
# (benches/attempts/v53/weight_only_ab.py) with each wheel in alternating processes.
set -e
for w in base new; do
  src=$([ $w = base ] && echo .whl-base || echo .whl)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site-$w $src/*.whl .whl-hf/*.whl
done
PYTHONPATH=/tmp/site-new python3 -m pytest -q -m gpu tests/backends/test_cuda.py \
  tests/backends/test_cuda_prepared.py tests/backends/test_dependent_launch.py \
  tests/test_weight_only.py -k "weight_only or auto or plan or prepared or dependent or graph"
A=benches/attempts/v53/weight_only_ab.py
S=${S:-4096x4096,4096x11008,11008x4096,8192x28672}
R=${R:-1,8,16,32}
PYTHONPATH=/tmp/site-base python3 $A base $R $S fp16
PYTHONPATH=/tmp/site-new python3 $A new $R $S
PYTHONPATH=/tmp/site-base python3 $A base2 $R $S
PYTHONPATH=/tmp/site-new python3 $A new2 $R $S
