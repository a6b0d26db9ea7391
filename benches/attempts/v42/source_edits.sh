# benches/NOTES.md v42's forms A-D: the v42 wheel installed at /tmp/new, its kernel source edited
# in place between runs (each run compiles its own binary: the cache is keyed by the source).
# Run from the repository root on an sm_90 GPU.
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/new
probe=benches/attempts/v42/probe.py
kernel=/tmp/new/llmint8/kernels/int8_wgmma_tokens.cu
cp "$kernel" /tmp/int8_wgmma_tokens.orig.cu
python3 "$probe" A-built
sed -i 's/stage_piece<T, BN>(tile, p, bits, rank, c0, \(smem_address(\)\?buffers)\?, t);//' "$kernel"
python3 "$probe" B-no-piece-work
cp /tmp/int8_wgmma_tokens.orig.cu "$kernel"
sed -i 's/WgmmaTokensRS<BN, T>::run(o, a\[s\], descriptor(buffer + 32 \* s));//' "$kernel"
python3 "$probe" C-no-chunk-wgmma
sed -i 's/stage_piece<T, BN>(tile, p, bits, rank, c0, \(smem_address(\)\?buffers)\?, t);//' "$kernel"
python3 "$probe" D-neither
cp /tmp/int8_wgmma_tokens.orig.cu "$kernel"
