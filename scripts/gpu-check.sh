#!/usr/bin/env bash
# On the GPU machine: install the carried wheels (llmint8's and bitsandbytes'), then run the
# stages named (default: all): `tests` (the whole suite, GPU tests included), `host` (host
# overhead per forward), `choice` (kernel per shape), `bench` (the layer benchmark; --quick for a
# small grid), `model` (the whole-model benchmark, benches/model.py). Results go to $OUT when it
# is set. PYTEST_ARGS adds arguments to pytest (split on spaces, e.g. PYTEST_ARGS='-m gpu');
# PYTEST_K is one -k expression (e.g. PYTEST_K='device_map or lora').
#   bash scripts/gpu-check.sh [tests] [host] [choice] [bench] [model] [--quick]
set -uo pipefail
out="${OUT:-/tmp/llmint8-gpu}"
mkdir -p "$out"
stages=() quick=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    tests | host | choice | bench | model) stages+=("$arg") ;;
    *) echo "unknown stage: $arg" >&2; exit 2 ;;
  esac
done
[ ${#stages[@]} -eq 0 ] && stages=(tests host choice bench model)
# .whl: llmint8's and bitsandbytes' wheels (leave bitsandbytes out when carrying .minilm: the
# carry holds 64 MiB); .whl-hf (optional): transformers >= 5.23, peft, huggingface_hub and
# tokenizers for the integration tests, where the machine's are older.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl $(ls .whl-hf/*.whl 2>/dev/null) || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# .minilm (optional): all-MiniLM-L6-v2 in fp16 from scripts/minilm_copy.py, for the GPU MiniLM test.
[ -f .minilm/config.json ] && export LLMINT8_MINILM_DIR="$PWD/.minilm"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, cupy, llmint8; print('torch', torch.__version__, 'cupy', cupy.__version__, 'llmint8', llmint8.__version__)"
status=0
for stage in "${stages[@]}"; do
  start=$SECONDS
  case "$stage" in
    tests)
      python3 -m pytest tests -q --maxfail=5 -p no:cacheprovider ${PYTEST_ARGS:-} ${PYTEST_K:+-k "$PYTEST_K"} 2>&1 | tee "$out/pytest.log" | tail -40
      status=${PIPESTATUS[0]}
      echo "pytest exit status: $status" ;;
    host)
      python3 benches/host_overhead.py 2>&1 | tee "$out/host.log" | grep -E "host time|regs|Error" | head -60 ;;
    choice)
      python3 benches/kernel_choice.py "${quick[@]}" --out "$out/choice.md" 2> "$out/choice.err" | cut -c1-200
      tail -3 "$out/choice.err" ;;
    bench)
      python3 benches/linear.py "${quick[@]}" --out "$out/linear.md" 2> "$out/bench.err"
      echo "bench exit status: $?"
      tail -5 "$out/bench.err" ;;
    model)
      python3 benches/model.py --out "$out/model.md" 2> "$out/model.err"
      echo "model exit status: $?"
      tail -5 "$out/model.err" ;;
  esac
  echo "stage $stage: $((SECONDS - start)) s"
done
exit "$status"
