// Row-wise absmax int8 quantization with outlier-column detection, one pass per row.
//
// Math (row m of x [rows, cols], threshold t, mode):
//   mode 0 (plain):    absmax[m] = max_k |x[m,k]|
//   mode 1 (detect):   absmax[m] = max over |x[m,k]| < t; every k with |x[m,k]| >= t sets bit k of
//                      `mask` (one atomicOr per warp and word, skipped where already set) and
//                      quantizes to 0
//   mode 2 (static):   absmax[m] = max over columns whose bit in `mask` is clear; those columns
//                      quantize to 0 (the mask is an input)
//   q[m,k] = round_half_even(x[m,k] * inverse[m]) clamped to [-127, 127]; 0 for a zero row, with
//   inverse[m] = fp32(fp32(1 / absmax[m]) * 127), bitsandbytes' arithmetic (see common.cuh).
//   A NaN anywhere in the counted elements makes absmax[m] NaN (and the row's q all zero).
// In mode 1 elements of an outlier column that are themselves below t keep their int8 value: the
// GEMM epilogue takes whole outlier columns out exactly (int32), so no second pass is needed here.
//
// Launch: grid = rows (one block per row), block = 256 threads (a multiple of 32: each warp reads
// whole mask words), no shared memory beyond statics.
// Pointers: x [rows, cols] row-major (T = __half, __nv_bfloat16 or float), q [rows, q_stride] int8,
// absmax [rows] float32, mask [ceil(cols / 32)] uint32 (zeroed by the caller in mode 1).
#include "common.cuh"

using namespace llmint8;

template <typename T>
__global__ void __launch_bounds__(256) quantize_rows(
    const T* __restrict__ x, signed char* __restrict__ q, float* __restrict__ absmax,
    unsigned int* __restrict__ mask, long long rows, int cols, int q_stride, float threshold,
    int mode) {
  const long long row = blockIdx.x;
  if (row >= rows) return;
  const T* xr = x + row * (long long)cols;
  signed char* qr = q + row * (long long)q_stride;

  float local_max = 0.0f;
  bool local_nan = false;
  for (int k = threadIdx.x; k < cols; k += blockDim.x) {
    const bool skip = mode == 2 && mask_bit(mask, k);
    const float v = to_float(xr[k]);
    const float a = fabsf(v);
    const bool nan = v != v;
    const bool outlier = mode == 1 && !nan && a >= threshold;
    if (mode == 1) {
      // The lanes of a warp read 32 consecutive columns, one mask word (k & 31 = lane): one
      // atomicOr per word and warp, and none where the word already holds the bits (with many
      // outliers, every row would otherwise hit the same few words).
      const unsigned bits = __ballot_sync(__activemask(), outlier);
      if (outlier && (threadIdx.x & 31) == __ffs(bits) - 1 && (__ldcg(&mask[k >> 5]) & bits) != bits)
        atomicOr(&mask[k >> 5], bits);
    }
    if (skip || outlier) continue;
    if (nan) local_nan = true;
    else local_max = fmaxf(local_max, a);
  }
  // Block reduction of (max, any NaN).
  __shared__ float warp_max[32];
  __shared__ int warp_nan[32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    local_max = fmaxf(local_max, __shfl_xor_sync(0xffffffffu, local_max, offset));
    local_nan |= __shfl_xor_sync(0xffffffffu, (int)local_nan, offset);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) { warp_max[warp] = local_max; warp_nan[warp] = local_nan; }
  __syncthreads();
  __shared__ float row_absmax;
  if (threadIdx.x == 0) {
    float m = 0.0f;
    int any_nan = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) { m = fmaxf(m, warp_max[w]); any_nan |= warp_nan[w]; }
    row_absmax = any_nan ? __int_as_float(0x7fc00000) : m;
    absmax[row] = row_absmax;
  }
  __syncthreads();
  const float a = row_absmax;
  // bitsandbytes' arithmetic (torch's `127.0 / row_stats`): the reciprocal, then times 127, each
  // correctly rounded; the CPU backend does the same, so both give the same codes bit for bit.
  const float inverse = a > 0.0f ? __fmul_rn(__frcp_rn(a), 127.0f) : 0.0f;
  for (int k = threadIdx.x; k < cols; k += blockDim.x) {
    float v = to_float(xr[k]);
    signed char out = quantize_value(v, inverse);
    if (mode == 1 && fabsf(v) >= threshold) out = 0;
    if (mode == 2 && mask_bit(mask, k)) out = 0;
    qr[k] = out;
  }
  for (int k = cols + threadIdx.x; k < q_stride; k += blockDim.x) qr[k] = 0;  // padding
}

template __global__ void quantize_rows<__half>(const __half*, signed char*, float*, unsigned int*,
                                               long long, int, int, float, int);
template __global__ void quantize_rows<__nv_bfloat16>(const __nv_bfloat16*, signed char*, float*,
                                                      unsigned int*, long long, int, int, float, int);
template __global__ void quantize_rows<float>(const float*, signed char*, float*, unsigned int*,
                                              long long, int, int, float, int);
