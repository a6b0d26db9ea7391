// Row-wise absmax int8 quantization with outlier-column detection, one pass per row.
//
// Math (row m of x [rows, cols], threshold t, mode):
//   mode 0 (plain):    absmax[m] = max_k |x[m,k]|
//   mode 1 (detect):   absmax[m] = max over |x[m,k]| < t; every k with |x[m,k]| >= t sets bit k of
//                      `mask` (one atomicOr per warp and word, skipped where already set) and
//                      quantizes to 0
//   mode 2 (static):   absmax[m] = max over columns whose bit in `mask` is clear; those columns
//                      quantize to 0 (the mask is an input)
//   mode | 4:          as mode, the next kernel held back until this one is complete (below)
//   q[m,k] = round_half_even(x[m,k] * inverse[m]) clamped to [-127, 127]; 0 for a zero row, with
//   inverse[m] = fp32(fp32(1 / absmax[m]) * 127), bitsandbytes' arithmetic (see common.cuh).
//   A NaN anywhere in the counted elements makes absmax[m] NaN (and the row's q all zero).
// In mode 1 elements of an outlier column that are themselves below t keep their int8 value: the
// GEMM epilogue takes whole outlier columns out exactly (int32), so no second pass is needed here.
//
// Launch: grid = rows (one block per row), block = THREADS threads (256, 512 or 1024: each warp
// reads whole mask words), no shared memory beyond statics. A row's block is the kernel's only
// parallelism for it: with few rows (fewer blocks than SMs) a wide block spreads a long row over
// more warps (H200, 128 rows of 11008 fp16 with outliers: 256 threads 6.1 us, 1024 threads 4.9;
// a copy of the bytes 2.1; benches/NOTES.md v26).
// Pointers: x [rows, cols] row-major (T = __half, __nv_bfloat16 or float), q [rows, q_stride] int8,
// absmax [rows] float32, mask [ceil(cols / 32)] uint32 (zeroed by the caller in mode 1).
// VEC: x 16-byte aligned and cols, q_stride multiples of 16: each thread reads 16 bytes of x at a
// time (V = 16 / sizeof(T) columns), keeps the first KEPT * THREADS * V columns in registers for
// the second pass (KEPT = 4 for 256 threads, 2 for wider blocks: 64 registers at 1024), and writes
// their V int8 codes as one store; otherwise element by element.
// Measured on the H200 (benches/NOTES.md v11): 128 rows of 8192 fp16, 19.6 us element by element.
#include "common.cuh"

using namespace llmint8;

namespace {
// V consecutive elements of a row from column k (VEC: one 16-byte load, whole vectors inside the
// row as cols is a multiple of V), zero past cols.
template <typename T, int V, bool VEC>
__device__ __forceinline__ void load_elements(const T* row, int k, int cols, float (&v)[V]) {
  if (VEC && k >= cols) {
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = 0.0f;
  } else if (VEC) {
    const int4 raw = __ldg(reinterpret_cast<const int4*>(row + k));
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = to_float(e[i]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = k + i < cols ? to_float(row[k + i]) : 0.0f;
  }
}

// The V codes as one store (VEC: 4 or 8 bytes, aligned) or byte by byte (k < cols only).
template <int V, bool VEC>
__device__ __forceinline__ void store_codes(signed char* row, int k, int cols, const signed char (&c)[V]) {
  if (VEC && V == 8) {
    *reinterpret_cast<uint2*>(row + k) = *reinterpret_cast<const uint2*>(c);
  } else if (VEC && V == 4) {
    *reinterpret_cast<unsigned*>(row + k) = *reinterpret_cast<const unsigned*>(c);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (k + i < cols) row[k + i] = c[i];
  }
}
}  // namespace

template <typename T, bool VEC, int THREADS>
__global__ void __launch_bounds__(THREADS, 1) quantize_rows(
    const T* __restrict__ x, signed char* __restrict__ q, float* __restrict__ absmax,
    unsigned int* __restrict__ mask, long long rows, int cols, int q_stride, float threshold,
    int mode) {
  // Bit 4 of mode: the next kernel starts only once this one is complete. Set wherever the int8
  // rows may be a weight (every call but a forward's own activations): int8_wgmma.cu reads its
  // weight's first tiles before it waits for the kernel before it.
  if (!(mode & 4)) allow_dependents();
  mode &= 3;
  wait_for_prerequisites();
  constexpr int V = VEC ? 16 / sizeof(T) : 1;  // columns per thread and step
  constexpr int GROUP = 32 / V;                // lanes sharing one 32-column mask word
  constexpr int KEPT = VEC ? (THREADS > 256 ? 2 : 4) : 0;  // steps whose 16 bytes stay in registers
  const long long row = blockIdx.x;
  if (row >= rows) return;
  const T* xr = x + row * (long long)cols;
  signed char* qr = q + row * (long long)q_stride;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  constexpr int stride = THREADS * V;
  // The V columns' bits of the (static) mask: k is a multiple of V, so they share one word.
  auto static_bits = [&](int k) {
    return mode == 2 && k < cols ? (mask[k >> 5] >> (k & 31)) & ((1u << V) - 1u) : 0u;
  };

  float local_max = 0.0f;
  bool local_nan = false;
  // One step of the first pass over columns k .. k + V - 1 (values v).
  auto scan = [&](const float (&v)[V], int k) {
    const unsigned skip = static_bits(k);
    unsigned outliers = 0;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const float a = fabsf(v[i]);
      const bool nan = v[i] != v[i], inside = k + i < cols;
      const bool outlier = mode == 1 && inside && !nan && a >= threshold;
      if (outlier) outliers |= 1u << i;
      if (!inside || outlier || ((skip >> i) & 1u)) continue;
      if (nan) local_nan = true;
      else local_max = fmaxf(local_max, a);
    }
    if (mode == 1) {
      // One atomicOr per mask word and warp (the GROUP lanes of a word OR their bits first), and
      // none where the word already holds the bits (with many outliers, every row would
      // otherwise hit the same few words).
      unsigned word = outliers << (k & 31);
#pragma unroll
      for (int offset = 1; offset < GROUP; offset <<= 1) word |= __shfl_xor_sync(0xffffffffu, word, offset);
      if (word != 0 && lane % GROUP == 0 && (__ldcg(&mask[k >> 5]) & word) != word)
        atomicOr(&mask[k >> 5], word);
    }
  };
  // Warp-uniform trip counts (each warp's first column decides), so the shuffles in `scan` see
  // every lane; lanes past the row's end take no part (zeros, no bits). The first KEPT steps
  // keep their values for the second pass (one read of x for rows of up to KEPT * stride).
  float kept[KEPT > 0 ? KEPT : 1][V];
#pragma unroll
  for (int step = 0; step < KEPT; ++step) {
    const int warp_k = warp * 32 * V + step * stride;
    if (warp_k < cols) {
      load_elements<T, V, VEC>(xr, warp_k + lane * V, cols, kept[step]);
      scan(kept[step], warp_k + lane * V);
    }
  }
  for (int warp_k = warp * 32 * V + KEPT * stride; warp_k < cols; warp_k += stride) {
    float v[V];
    load_elements<T, V, VEC>(xr, warp_k + lane * V, cols, v);
    scan(v, warp_k + lane * V);
  }
  // Block reduction of (max, any NaN).
  __shared__ float warp_max[THREADS / 32];
  __shared__ int warp_nan[THREADS / 32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    local_max = fmaxf(local_max, __shfl_xor_sync(0xffffffffu, local_max, offset));
    local_nan |= __shfl_xor_sync(0xffffffffu, (int)local_nan, offset);
  }
  if (lane == 0) { warp_max[warp] = local_max; warp_nan[warp] = local_nan; }
  __syncthreads();
  __shared__ float row_absmax;
  if (threadIdx.x == 0) {
    float m = 0.0f;
    int any_nan = 0;
    for (int w = 0; w < THREADS / 32; ++w) { m = fmaxf(m, warp_max[w]); any_nan |= warp_nan[w]; }
    row_absmax = any_nan ? __int_as_float(0x7fc00000) : m;
    absmax[row] = row_absmax;
  }
  __syncthreads();
  const float a = row_absmax;
  // bitsandbytes' arithmetic (torch's `127.0 / row_stats`): the reciprocal, then times 127, each
  // correctly rounded; the CPU backend does the same, so both give the same codes bit for bit.
  const float inverse = a > 0.0f ? __fmul_rn(__frcp_rn(a), 127.0f) : 0.0f;
  auto emit = [&](const float (&v)[V], int k) {
    const unsigned skip = static_bits(k);
    signed char codes[V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
      codes[i] = quantize_value(v[i], inverse);
      if (mode == 1 && fabsf(v[i]) >= threshold) codes[i] = 0;
      if ((skip >> i) & 1u) codes[i] = 0;
    }
    store_codes<V, VEC>(qr, k, cols, codes);
  };
#pragma unroll
  for (int step = 0; step < KEPT; ++step) {
    const int k = threadIdx.x * V + step * stride;
    if (k < cols) emit(kept[step], k);
  }
  for (int k = threadIdx.x * V + KEPT * stride; k < cols; k += stride) {
    float v[V];
    load_elements<T, V, VEC>(xr, k, cols, v);
    emit(v, k);
  }
  for (int k = cols + threadIdx.x; k < q_stride; k += THREADS) qr[k] = 0;  // padding
}

#define INSTANTIATE(T, VEC, THREADS)                                                               \
  template __global__ void quantize_rows<T, VEC, THREADS>(const T*, signed char*, float*,          \
                                                          unsigned int*, long long, int, int,      \
                                                          float, int);
#define INSTANTIATE_WIDTHS(T, VEC) \
  INSTANTIATE(T, VEC, 256) INSTANTIATE(T, VEC, 512) INSTANTIATE(T, VEC, 1024)
INSTANTIATE_WIDTHS(__half, true)
INSTANTIATE_WIDTHS(__half, false)
INSTANTIATE_WIDTHS(__nv_bfloat16, true)
INSTANTIATE_WIDTHS(__nv_bfloat16, false)
INSTANTIATE_WIDTHS(float, true)
INSTANTIATE_WIDTHS(float, false)
