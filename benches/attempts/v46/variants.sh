# The v46 decomposition (benches/NOTES.md v46): int8_wgmma_tokens.cu's dense outlier part with
# parts taken out, each as a source edit of an installed copy of the package, timed by
# benches/attempts/v44/probe_c0.py at C = 0 and 512 (4096x11008, 32 / 64 / 128 rows, best of
# three). Forms without the conversion or the fp16 wgmmas give wrong sums: timing only.
#
# usage, on the device from the repository root, with the package installed at /tmp/site (the
# v46 patch applied to 8d94f31 and built) and main's kernel source at $V44:
#   V44=path/to/main/int8_wgmma_tokens.cu bash benches/attempts/v46/variants.sh v44 v46 c0 c1 ...
set -eu
V46=/tmp/site/llmint8/kernels/int8_wgmma_tokens.cu
NOCONV='s|convert_weight_tile<T, BN, CONVERTERS>(ring|if (t < 0) convert_weight_tile<T, BN, CONVERTERS>(ring|'
fp16_groups() { echo "s|for (int s = 0; s < BK / 16; ++s)|for (int s = 0; s < $1; ++s)|"; }
TWO_PIECES='s|for (int e = 0; e < BN \* 8 / THREADS; ++e) {|for (int e = 0; e < 2; ++e) {|'
NO_FP16='s|          WgmmaTokensSS<BN, T>::run(o, descriptor(xo|          (void)(descriptor(xo|'
WARP_ARRIVAL=('s|barrier_init(smem_address(&w16_full\[b\]), CONVERTERS);|barrier_init(smem_address(\&w16_full[b]), CONVERTERS / 32);|'
  's|      barrier_arrive(smem_address(&w16_full\[b\]));|      __syncwarp(); if (t % 32 == 0) barrier_arrive(smem_address(\&w16_full[b]));|')
ONE_SLOT_FEWER=('s|/ STAGE_BYTES : STAGES|/ STAGE_BYTES - 1 : STAGES|' 's/DENSE_SLOTS >= 4/DENSE_SLOTS >= 3/')

# variant NAME SOURCE SED... : /tmp/site-NAME, the package with its tokens kernel edited
variant() {
  local name=$1 source=$2
  shift 2
  rm -rf "/tmp/site-$name" && cp -r /tmp/site "/tmp/site-$name"
  local file="/tmp/site-$name/llmint8/kernels/int8_wgmma_tokens.cu"
  cp "$source" "$file"
  for edit in "$@"; do sed -i "$edit" "$file"; done
}

for name in "$@"; do
  case $name in
    v44) variant v44 "$V44" ;;
    v44s) variant v44s "$V44" "${ONE_SLOT_FEWER[@]}" ;;  # v44, one ring slot fewer
    v46) variant v46 "$V46" ;;
    v46a) variant v46a "$V46" "${WARP_ARRIVAL[@]}" ;;  # w16_full: one arrival a warp
    v46c) variant v46c "$V46" "$NOCONV" ;;  # no conversion
    v46w) variant v46w "$V46" "$NO_FP16" ;;  # no fp16 wgmmas
    c0) variant c0 "$V46" "$NOCONV" "$(fp16_groups 0)" ;;  # the skeleton: neither
    c1) variant c1 "$V46" "$NOCONV" "$(fp16_groups 1)" ;;  # no conversion, one k16 wgmma a hot tile
    c2) variant c2 "$V46" "$NOCONV" "$(fp16_groups 2)" ;;
    x8) variant x8 "$V46" "$TWO_PIECES" ;;  # 2 of 12 (16) pieces a converting thread
    x1) variant x1 "$V46" "$TWO_PIECES" "$(fp16_groups 1)" ;;
    *) echo "unknown variant $name" >&2; exit 2 ;;
  esac
  PYTHONPATH="/tmp/site-$name" PROBE_C=0,512 python3 benches/attempts/v44/probe_c0.py "$name" 2>&1 | grep -E "PROBE|Error"
done
