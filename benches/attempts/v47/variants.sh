# The v47 decomposition (benches/NOTES.md v47): int8_wgmma_tokens.cu's dense outlier part at
# e82248b with parts taken out by source edits of an installed copy of the package, timed by
# benches/attempts/v44/probe_c0.py at C = 0 and 512 (4096x11008, 32 / 64 / 128 rows, best of
# three). Forms without the conversion, the fp16 wgmmas or Xo's copies give wrong sums: timing only.
# `pad` forms also edit the installed cuda.py (pad_maps.py: what v47 shipped).
#
# usage, on the device from the repository root, with e82248b's wheel installed at /tmp/site:
#   bash benches/attempts/v47/variants.sh v44 s0 s0nox pad s0pad padx4
set -eu
HERE=$(dirname "$0")
NOCONV='s|        convert_weight_tile<T, BN, 128 \* CONSUMERS>(ring|        if (threadIdx.x < 0) convert_weight_tile<T, BN, 128 * CONSUMERS>(ring|'
NO_FP16='s|for (int s = 0; s < BK / 16; ++s)|for (int s = 0; s < 0; ++s)|'
XO4='s|XO_BUFFERS = 2;|XO_BUFFERS = CONSUMERS == 1 ? 4 : 2;|'
# Xo's copies gone: the barrier completes on the copy thread's arrival alone (hopper.cuh)
NO_XO='s|    arrive_expecting(bar, 2 \* half);|    barrier_arrive(bar);|;s|    copy_box(dst, xo_map, t \* 128, m0, bar);||;s|    copy_box(dst + half, xo_map, t \* 128 + 64, m0, bar);||'

# variant NAME TOKENS_SED HOPPER_SED PAD: /tmp/site-NAME ("-": no edit)
variant() {
  local name=$1 tokens=$2 hopper=$3 pad=$4
  rm -rf "/tmp/site-$name" && cp -r /tmp/site "/tmp/site-$name"
  local d="/tmp/site-$name/llmint8"
  if [ "$tokens" != - ]; then sed -i "$tokens" "$d/kernels/int8_wgmma_tokens.cu"; fi
  if [ "$hopper" != - ]; then sed -i "$hopper" "$d/kernels/hopper.cuh"; fi
  if [ "$pad" = pad ]; then python3 "$HERE/pad_maps.py" "$d/backends/cuda.py"; fi
}

for name in "$@"; do
  case $name in
    v44) variant v44 - - - ;;
    xb4) variant xb4 "$XO4" - - ;;  # four Xo buffers in the one-consumer tiles
    s0) variant s0 "$NOCONV;$NO_FP16" - - ;;  # the skeleton
    s0nox) variant s0nox "$NOCONV;$NO_FP16" "$NO_XO" - ;;  # ... without Xo's copies
    pad) variant pad - - pad ;;  # tensor maps over whole token tiles (v47)
    s0pad) variant s0pad "$NOCONV;$NO_FP16" - pad ;;
    padx4) variant padx4 "$XO4" - pad ;;
    *) echo "unknown variant $name" >&2; exit 2 ;;
  esac
  PYTHONPATH="/tmp/site-$name" PROBE_C=0,512 python3 benches/attempts/v44/probe_c0.py "$name" 2>&1 | grep -E "PROBE|Error"
done
