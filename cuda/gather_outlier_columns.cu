// Gathers the outlier columns of the activations and the weights into compact, dense matrices, so
// that the GEMM multiplies them as a matrix product reading contiguous tiles, and zeroes them in
// the int8 activations (the int8 product then leaves them out: cuBLAS or the own GEMM alike).
// Runs once per forward, after the quantize kernel has completed the outlier mask.
//
// Math, for the ascending list c_0 < c_1 < ... < c_{C-1} of the columns whose bit is set in `mask`:
//   xc[m, j] = x[m, c_j],  q[m, c_j] = 0      for m < rows_x
//   wc[n, j] = w[n, c_j]                       for n < rows_w
//   xc[m, j] = wc[n, j] = 0 for C <= j < round_up(C, OUTLIER_CHUNK) (whole chunks); *count = C.
//
// Launch: grid = any number of blocks up to ceil((rows_x + rows_w) / 8) (a few per SM: listing the
// columns costs each block a pass over the mask), block = 256 threads, a row per warp at a time
// (rows r < rows_x are x rows, the rest w rows r - rows_x; warp w of block b takes rows
// 8b + w, 8b + w + 8 * gridDim.x, ...). The block lists the outlier columns in shared memory
// (LIST_CAPACITY at a time), then each warp copies them for its rows,
// lane l taking list entries 4l .. 4l + 3, 4l + 128 .. (independent loads, many in flight; runs of
// columns coalesce, and four aligned consecutive columns move as one vector). Element type T of x
// and xc: __half, __nv_bfloat16 or float.
// Pointers: mask [ceil(cols / 32)] uint32, x [rows_x, ldx] T, q [rows_x, ldq] int8,
// w [rows_w, ldw] int8, xc [rows_x, ldc] T, wc [rows_w, ldc] int8 (ldc a multiple of
// OUTLIER_CHUNK, at least cols rounded up to one; xc and wc 16-byte aligned), count [1] int32,
// columns [cols] int32 or null: where set, block 0 also writes the list c_0 .. c_{C-1} there (for
// int8_wgmma.cu, which reads the weight's outlier columns in place: it passes rows_w = 0).
// hot_tiles [ceil(ceil(cols / 128) / 32)] uint32 or null: where set and there are more than
// OUTLIER_CHUNK columns (the dense outlier part of int8_wgmma.cu and int8_wgmma_tokens.cu),
// nothing is listed or gathered: instead bit t of hot_tiles tells whether K tile t (columns
// [128 t, 128 t + 128)) holds an outlier column (block 0), and for those tiles xc [rows_x, ldc]
// receives x with every other column zero (Xo; x, xc and ldx, ldc 16-byte aligned); the outlier
// columns of q are zeroed as always. A warp takes a (row, tile) pair at a time, each lane four
// columns: the grid may then have up to rows_x * ceil(cols / 128) / 8 blocks of work.
// hand_over_above: -1, or where "auto" hands calls with more outlier columns than that over to
// the weight-only product (hopper.cuh): for those this kernel writes the count alone.
// clear = 1: the mask is the stream's own (the caller keeps it zeroed between calls instead of
// zeroing it before each), with an arrival counter at mask[ceil(cols / 32)]; each block counts
// itself in once it has read the mask for the last time, and the last one zeroes the mask words
// and the counter, leaving both as the next call's quantize kernel expects them. Nothing reads
// the mask after this kernel (the products take the list or the gathered columns). With
// int8_wgmma.cu the caller passes clear = 0 and that kernel zeroes the mask once this one is
// complete (no counter: the counter's fence and atomic cost ~1 us, benches/NOTES.md v28).
#include "common.cuh"

using namespace llmint8;

namespace {
constexpr int THREADS = 256, ROWS_PER_BLOCK = THREADS / 32;  // a row per warp
constexpr int LIST_CAPACITY = 4096;  // outlier columns listed at a time (16 KB)
constexpr int FEW_COLUMNS = 2 * OUTLIER_CHUNK;  // up to this many (padded): a thread per element
constexpr int UNROLL = 4;  // elements per thread and step then

// Four elements of E as one aligned word.
template <int BYTES> struct Four;
template <> struct Four<4> { using type = unsigned int; };
template <> struct Four<8> { using type = uint2; };
template <> struct Four<16> { using type = uint4; };

// dst[j] = src[list[j]] for j < n (and zero[list[j]] = 0 where `zero` is set): the warp's lanes
// take four entries each; four consecutive, aligned columns move as one vector.
template <typename E>
__device__ __forceinline__ void copy_columns(const E* __restrict__ src, E* __restrict__ dst,
                                             signed char* __restrict__ zero, const int* list, int n,
                                             int lane) {
  using V = typename Four<4 * sizeof(E)>::type;
#pragma unroll 2
  for (int j = 4 * lane; j < n; j += 128) {
    const int4 c = *reinterpret_cast<const int4*>(list + j);  // entries past n: unused
    const bool run = j + 3 < n && c.w - c.x == 3 &&
                     reinterpret_cast<size_t>(src + c.x) % sizeof(V) == 0;
    if (run) {
      *reinterpret_cast<V*>(dst + j) = *reinterpret_cast<const V*>(src + c.x);
      if (zero != nullptr) {
        if (reinterpret_cast<size_t>(zero + c.x) % 4 == 0) {
          *reinterpret_cast<unsigned int*>(zero + c.x) = 0u;
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e) zero[c.x + e] = 0;
        }
      }
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int column = e == 0 ? c.x : e == 1 ? c.y : e == 2 ? c.z : c.w;
        if (j + e < n) {
          dst[j + e] = src[column];
          if (zero != nullptr) zero[column] = 0;
        }
      }
    }
  }
}
// clear = 1 (see the header): counts this block in once it has read the mask for the last time
// (thread 0; the fence orders its reads before the count) and returns the counter's old value.
__device__ __forceinline__ unsigned int count_in(unsigned int* mask, int words, int clear) {
  if (!clear || threadIdx.x != 0) return 0u;
  __threadfence();
  return atomicAdd(&mask[words], 1u);
}

// The last block to count in (the old value from `count_in` in thread 0) zeroes the mask and the
// counter: every block has read the mask by then.
__device__ __forceinline__ void leave_mask_zeroed(unsigned int* mask, int words, int clear,
                                                  unsigned int arrived) {
  if (!clear) return;
  __shared__ int last;
  if (threadIdx.x == 0) last = arrived == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int w = threadIdx.x; w <= words; w += THREADS) mask[w] = 0u;
}

// The dense outlier part (see the header): block 0 writes hot_tiles; every warp of the grid takes
// (row, tile) pairs of hot tiles, lane l columns 128 t + 4 l .. + 3 (mask word 4 t + l / 8).
template <typename T>
__device__ __forceinline__ void write_dense_tiles(const unsigned int* __restrict__ mask, int words,
                                                  const T* __restrict__ x, int ldx,
                                                  signed char* __restrict__ q, int ldq,
                                                  T* __restrict__ xo, int ldo, int rows, int cols,
                                                  unsigned int* __restrict__ hot_tiles) {
  using V = typename Four<4 * sizeof(T)>::type;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, tiles = (cols + 127) / 128;
  if (blockIdx.x == 0)
    for (int t0 = 0; t0 < tiles; t0 += THREADS) {
      const int t = t0 + threadIdx.x;
      bool hot = false;
      for (int w = 4 * t; t < tiles && w < min(4 * t + 4, words); ++w) hot |= mask[w] != 0u;
      const unsigned int bits = __ballot_sync(0xffffffffu, hot);
      if (lane == 0 && t0 + 32 * warp < tiles) hot_tiles[t0 / 32 + warp] = bits;
    }
  const long long items = (long long)rows * tiles, step = (long long)gridDim.x * ROWS_PER_BLOCK;
  for (long long item = (long long)blockIdx.x * ROWS_PER_BLOCK + warp; item < items; item += step) {
    const long long row = item / tiles;
    const int t = static_cast<int>(item - row * tiles), c = 128 * t + 4 * lane;
    const int w = 4 * t + lane / 8;
    const unsigned int bits = w < words ? (mask[w] >> (4 * lane % 32)) & 0xFu : 0u;
    if (!__any_sync(0xffffffffu, bits != 0u)) continue;  // a tile without outlier columns
    if (c >= cols) continue;  // past K: the tensor map reads zeros there
    V v = *reinterpret_cast<const V*>(x + row * ldx + c);
    T* values = reinterpret_cast<T*>(&v);
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (!((bits >> e) & 1u)) values[e] = from_float<T>(0.0f);
    *reinterpret_cast<V*>(xo + row * ldo + c) = v;
    if (bits != 0u) {
      unsigned int* codes = reinterpret_cast<unsigned int*>(q + row * ldq + c);
      unsigned int keep = 0u;
#pragma unroll
      for (int e = 0; e < 4; ++e) keep |= (bits >> e) & 1u ? 0u : 0xffu << (8 * e);
      *codes &= keep;
    }
  }
}
}  // namespace

template <typename T>
__global__ void __launch_bounds__(THREADS) gather_outlier_columns(
    unsigned int* __restrict__ mask, const T* __restrict__ x, int ldx, signed char* __restrict__ q,
    int ldq, const signed char* __restrict__ w, int ldw, T* __restrict__ xc,
    signed char* __restrict__ wc, int ldc, int* __restrict__ count, int rows_x, int rows_w,
    int cols, int* __restrict__ columns, int clear, unsigned int* __restrict__ hot_tiles,
    int hand_over_above) {
  allow_dependents();
  wait_for_prerequisites();
  __shared__ __align__(16) int list[LIST_CAPACITY];
  __shared__ int scan_scratch[THREADS / 32 + 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const long long first_row = (long long)blockIdx.x * ROWS_PER_BLOCK + warp;
  const long long rows = (long long)rows_x + rows_w, row_step = (long long)gridDim.x * ROWS_PER_BLOCK;
  const int words = (cols + 31) / 32;
  OutlierColumns<THREADS> outliers;
  outliers.count(mask, 0, words, scan_scratch);
  const int total = outliers.total;
  if (blockIdx.x == 0 && threadIdx.x == 0) *count = total;
  if (hand_over_above >= 0 && total > hand_over_above) {  // the weight-only kernel takes the call
    leave_mask_zeroed(mask, words, clear, count_in(mask, words, clear));
    return;
  }
  if (hot_tiles != nullptr && total > OUTLIER_CHUNK) {
    write_dense_tiles(mask, words, x, ldx, q, ldq, xc, ldc, rows_x, cols, hot_tiles);
    leave_mask_zeroed(mask, words, clear, count_in(mask, words, clear));
    return;
  }
  const int padded = (total + OUTLIER_CHUNK - 1) / OUTLIER_CHUNK * OUTLIER_CHUNK;
  if (padded <= FEW_COLUMNS && (long long)rows_w * padded < (1ll << 31)) {
    // Few columns (the usual case): a warp per weight row would leave most lanes idle and chain
    // the rows' loads one after another; instead every thread takes elements (n, j) of wc, the
    // zero padding included, UNROLL loads in flight. x rows go on a warp per row (they also
    // zero the int8 activations). Measured on 8192x28672 at M = 128 with 6 columns: 15.5 us
    // with a warp per row (benches/NOTES.md v11).
    outliers.fill(mask, 0, LIST_CAPACITY, list);
    const unsigned int arrived = count_in(mask, words, clear);  // the mask is read: count in
    if (columns != nullptr && blockIdx.x == 0)
      for (int j = threadIdx.x; j < total; j += THREADS) columns[j] = list[j];
    for (long long row = first_row; row < rows_x; row += row_step) {
      copy_columns(x + row * ldx, xc + row * ldc, q + row * ldq, list, total, lane);
      for (int j = total + lane; j < padded; j += 32) xc[row * ldc + j] = from_float<T>(0.0f);
    }
    const int elements = rows_w * padded, step = gridDim.x * THREADS;
    for (int base = blockIdx.x * THREADS + threadIdx.x; base < elements; base += UNROLL * step) {
      signed char v[UNROLL];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int e = base + u * step, n = e / padded, j = e - n * padded;
        v[u] = e < elements && j < total ? w[(long long)n * ldw + list[j]] : 0;
      }
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int e = base + u * step, n = e / padded, j = e - n * padded;
        if (e < elements) wc[(long long)n * ldc + j] = v[u];
      }
    }
    leave_mask_zeroed(mask, words, clear, arrived);
    return;
  }
  for (int window = 0; window < total; window += LIST_CAPACITY) {
    outliers.fill(mask, window, LIST_CAPACITY, list);
    const int n = min(LIST_CAPACITY, total - window);
    if (columns != nullptr && blockIdx.x == 0)
      for (int j = threadIdx.x; j < n; j += THREADS) columns[window + j] = list[j];
    for (long long row = first_row; row < rows; row += row_step) {
      if (row < rows_x)
        copy_columns(x + row * ldx, xc + row * ldc + window, q + row * ldq, list, n, lane);
      else
        copy_columns(w + (row - rows_x) * ldw, wc + (row - rows_x) * ldc + window,
                     static_cast<signed char*>(nullptr), list, n, lane);
    }
    __syncthreads();  // the list is read before the next window overwrites it
  }
  const unsigned int arrived = count_in(mask, words, clear);  // the mask is read: count in
  // Zeros up to the next multiple of OUTLIER_CHUNK columns: the GEMM multiplies whole chunks.
  for (long long row = first_row; row < rows; row += row_step)
    for (int j = total + lane; j < padded; j += 32) {
      if (row < rows_x) xc[row * ldc + j] = from_float<T>(0.0f);
      else wc[(row - rows_x) * ldc + j] = 0;
    }
  leave_mask_zeroed(mask, words, clear, arrived);
}

#define INSTANTIATE(T)                                                                        \
  template __global__ void gather_outlier_columns<T>(unsigned int*, const T*, int, signed char*,  \
                                                     int, const signed char*, int, T*,            \
                                                     signed char*, int, int*, int, int, int, int*, \
                                                     int, unsigned int*, int);
INSTANTIATE(__half)
INSTANTIATE(__nv_bfloat16)
INSTANTIATE(float)
