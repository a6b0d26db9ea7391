// Few-token int8 linear (M <= MAXM, decode): int8 weights streamed once with 16-byte loads,
// int8 x int8 products accumulated exactly with dp4a (sm_61+), the LLM.int8() epilogue fused.
// Also the fallback for every M on GPUs without int8 mma.sync m16n8k32 (sm_75): grid.y walks
// the rows of A in groups of MAXM.
//
// Math: identical to int8_gemm.cu (acc over the non-outlier columns in exact int32: the outlier
// columns are zeroed in the staged chunks of A; the outlier columns' X * B summed in fp32, then
// scales and bias); MODE 0 writes the raw int32 acc.
//
// Launch: grid = (ceil(N / ROWS_PER_BLOCK), ceil(M / MAXM), splits), block = 256 threads (8 warps,
// each owning ROWS_PER_WARP = 2 weight rows), static shared memory: a K chunk of A (16 KB at
// most). Split K (splits > 1, for few weight rows and long rows): block z sums columns
// [z * k_per_split, (z + 1) * k_per_split) (k_per_split a multiple of 512), including the outlier
// columns there, stores its partial sums to `partials` and the last block of its tile to arrive
// (counter in `tile_counters`, zero before the launch, reset by that block) adds the splits in
// order z = 0, 1, ... (deterministic float sums) and writes the output.
// Pointers as in int8_gemm.cu; partials [splits * tiles * ROWS_PER_BLOCK * MAXM * 2] 32-bit
// words, tile_counters [tiles]. ALIGNED: K, lda, ldb multiples of 16 and A, B 16-byte aligned.
#include "common.cuh"

using namespace llmint8;

namespace {
constexpr int THREADS = 256, WARPS = THREADS / 32, ROWS_PER_WARP = 2;
constexpr int ROWS_PER_BLOCK = WARPS * ROWS_PER_WARP;
constexpr int COL_CAPACITY = 1024;  // outlier columns listed at a time (more: several windows)
// K chunk of A staged in shared memory per row: 16 KB of A per block (8 KB for one row).
template <int MAXM> constexpr int k_chunk() { return MAXM == 1 ? 8192 : 16384 / MAXM; }

__device__ __forceinline__ int dot16(const int4& w, const int4& x, int acc) {
  acc = __dp4a(w.x, x.x, acc);
  acc = __dp4a(w.y, x.y, acc);
  acc = __dp4a(w.z, x.z, acc);
  return __dp4a(w.w, x.w, acc);
}

}  // namespace

template <typename T, int MAXM, bool ALIGNED, int MODE>
__global__ void __launch_bounds__(THREADS) int8_gemv(
    const signed char* __restrict__ A, const signed char* __restrict__ B, int M, int N, int K,
    int lda, int ldb, const float* __restrict__ absmax, const float* __restrict__ SCB,
    const void* __restrict__ bias, int bias_kind, const T* __restrict__ X, int ldx,
    const unsigned int* __restrict__ mask, T* __restrict__ out, int* __restrict__ out_i32,
    int ldo, int* __restrict__ partials, unsigned int* __restrict__ tile_counters,
    int k_per_split) {
  allow_dependents();
  wait_for_prerequisites();
  constexpr int KC = k_chunk<MAXM>();
  const int k_begin = blockIdx.z * k_per_split, k_end = min(K, k_begin + k_per_split);
  __shared__ __align__(16) signed char a_s[MAXM][KC];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int m0 = blockIdx.y * MAXM;
  const int rows_here = min(MAXM, M - m0);
  const int n_base = blockIdx.x * ROWS_PER_BLOCK + warp * ROWS_PER_WARP;

  int acc[ROWS_PER_WARP][MAXM];
  float extra[ROWS_PER_WARP][MAXM];
#pragma unroll
  for (int r = 0; r < ROWS_PER_WARP; ++r)
#pragma unroll
    for (int m = 0; m < MAXM; ++m) { acc[r][m] = 0; extra[r][m] = 0.0f; }

  const int words = MODE == 1 && mask != nullptr ? (K + 31) / 32 : 0;  // of the outlier mask
  for (int k0 = k_begin; k0 < k_end; k0 += KC) {
    // Thread t holds mask word t of this chunk (k0 is a multiple of 32).
    const int word = k0 / 32 + threadIdx.x;
    const unsigned my_bits =
        threadIdx.x < KC / 32 && word < words && word * 32 < k_end ? __ldg(mask + word) : 0u;
    __syncthreads();
    for (int i = threadIdx.x; i < MAXM * (KC / 16); i += THREADS) {
      const int m = i / (KC / 16), k = (i % (KC / 16)) * 16;
      int4 v = make_int4(0, 0, 0, 0);
      if (m < rows_here && k0 + k < k_end) v = load16<ALIGNED>(A + (long long)(m0 + m) * lda, k0 + k, K);
      *reinterpret_cast<int4*>(&a_s[m][k]) = v;
    }
    if (__syncthreads_or(my_bits != 0u)) {
      // Take the outlier columns out of the int8 product: zero them in the staged chunk.
      for (unsigned rest = my_bits; rest; rest &= rest - 1) {
        const int c = threadIdx.x * 32 + __ffs(rest) - 1;
#pragma unroll
        for (int m = 0; m < MAXM; ++m) a_s[m][c] = 0;
      }
      __syncthreads();
    }
#pragma unroll
    for (int k = lane * 16; k < KC; k += 32 * 16) {
      if (k0 + k >= k_end) break;
      int4 w[ROWS_PER_WARP];
#pragma unroll
      for (int r = 0; r < ROWS_PER_WARP; ++r) {
        const int n = n_base + r;
        w[r] = n < N ? load16<ALIGNED>(B + (long long)n * ldb, k0 + k, K) : make_int4(0, 0, 0, 0);
      }
#pragma unroll
      for (int m = 0; m < MAXM; ++m) {
        const int4 a = *reinterpret_cast<const int4*>(&a_s[m][k]);
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; ++r) acc[r][m] = dot16(w[r], a, acc[r][m]);
      }
    }
  }

  if (words) {
    // The outlier columns of this split in floating point, from the block's ascending list of
    // them: lane j of every warp takes columns j, j + 32, ... of the list for the warp's rows
    // (independent loads, many in flight; runs of columns coalesce).
    __shared__ int cols[COL_CAPACITY];
    __shared__ int scan_scratch[WARPS + 1];
    OutlierColumns<THREADS> outliers;
    outliers.count(mask, k_begin / 32, min(words, (k_end + 31) / 32), scan_scratch);
    for (int window = 0; window < outliers.total; window += COL_CAPACITY) {
      outliers.fill(mask, window, COL_CAPACITY, cols);
      const int in_window = min(COL_CAPACITY, outliers.total - window);
#pragma unroll(MAXM <= 4 ? 4 : 1)
      for (int j = lane; j < in_window; j += 32) {
        const int c = cols[j];
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
          const int n = n_base + r;
          const float wq = n < N ? static_cast<float>(B[(long long)n * ldb + c]) : 0.0f;
#pragma unroll
          for (int m = 0; m < MAXM; ++m)
            if (m < rows_here) extra[r][m] += to_float(X[(long long)(m0 + m) * ldx + c]) * wq;
        }
      }
      __syncthreads();  // the list is read before the next window overwrites it
    }
  }

#pragma unroll
  for (int r = 0; r < ROWS_PER_WARP; ++r)
#pragma unroll
    for (int m = 0; m < MAXM; ++m)
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) {
        acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], offset);
        if (MODE == 1) extra[r][m] += __shfl_xor_sync(0xffffffffu, extra[r][m], offset);
      }

  if (gridDim.z > 1) {
    // Split K: lane m publishes its (acc, extra) pairs; the last block of the tile sums them.
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    constexpr int SLAB = ROWS_PER_BLOCK * MAXM * 2;  // 32-bit words per split
    int* slab = partials + (long long)tile * gridDim.z * SLAB;
    auto slot = [&](int z, int r, int m) { return z * SLAB + ((warp * ROWS_PER_WARP + r) * MAXM + m) * 2; };
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r)
#pragma unroll
      for (int m = 0; m < MAXM; ++m)
        if (lane == m) {
          slab[slot(blockIdx.z, r, m)] = acc[r][m];
          slab[slot(blockIdx.z, r, m) + 1] = __float_as_int(extra[r][m]);
        }
    if (!last_to_arrive(&tile_counters[tile], gridDim.z)) return;
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r)
#pragma unroll
      for (int m = 0; m < MAXM; ++m)
        if (lane == m) {
          int total = 0;
          float total_extra = 0.0f;
          for (int z = 0; z < (int)gridDim.z; ++z) {
            total += __ldcg(&slab[slot(z, r, m)]);
            total_extra += __int_as_float(__ldcg(&slab[slot(z, r, m) + 1]));
          }
          acc[r][m] = total;
          extra[r][m] = total_extra;
        }
    if (threadIdx.x == 0) tile_counters[tile] = 0;  // ready for the next launch
  }

#pragma unroll
  for (int r = 0; r < ROWS_PER_WARP; ++r) {
    const int n = n_base + r;
#pragma unroll
    for (int m = 0; m < MAXM; ++m) {
      // Lane m writes row m (MAXM <= 32).
      if (lane != m || m >= rows_here || n >= N) continue;
      const long long o = (long long)(m0 + m) * ldo + n;
      if (MODE == 0) {
        out_i32[o] = acc[r][m];
      } else {
        const float w_scale = SCB[n] / 127.0f;
        const float v = static_cast<float>(acc[r][m]) * (absmax[m0 + m] / 127.0f) + extra[r][m];
        out[o] = from_float<T>(v * w_scale + load_bias(bias, bias_kind, n));
      }
    }
  }
}

#define INSTANTIATE_M(T, MAXM)                                                                  \
  template __global__ void int8_gemv<T, MAXM, true, 1>(                                         \
      const signed char*, const signed char*, int, int, int, int, int, const float*,            \
      const float*, const void*, int, const T*, int, const unsigned int*, T*, int*, int, int*,   \
      unsigned int*, int);                                                                      \
  template __global__ void int8_gemv<T, MAXM, false, 1>(                                        \
      const signed char*, const signed char*, int, int, int, int, int, const float*,            \
      const float*, const void*, int, const T*, int, const unsigned int*, T*, int*, int, int*,   \
      unsigned int*, int);
#define INSTANTIATE(T) INSTANTIATE_M(T, 1) INSTANTIATE_M(T, 4) INSTANTIATE_M(T, 8) INSTANTIATE_M(T, 16)
INSTANTIATE(__half)
INSTANTIATE(__nv_bfloat16)
INSTANTIATE(float)
template __global__ void int8_gemv<__half, 16, true, 0>(
    const signed char*, const signed char*, int, int, int, int, int, const float*, const float*,
    const void*, int, const __half*, int, const unsigned int*, __half*, int*, int, int*, unsigned int*,
    int);
template __global__ void int8_gemv<__half, 16, false, 0>(
    const signed char*, const signed char*, int, int, int, int, int, const float*, const float*,
    const void*, int, const __half*, int, const unsigned int*, __half*, int*, int, int*, unsigned int*,
    int);
