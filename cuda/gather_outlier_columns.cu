// Gathers the outlier columns of the activations and the weights into compact, dense matrices, so
// that the GEMM multiplies them as a matrix product reading contiguous tiles, and zeroes them in
// the int8 activations (the int8 product then leaves them out: cuBLAS or the own GEMM alike).
// Runs once per forward, after the quantize kernel has completed the outlier mask.
//
// Math, for the ascending list c_0 < c_1 < ... < c_{C-1} of the columns whose bit is set in `mask`:
//   xc[m, j] = x[m, c_j],  q[m, c_j] = 0      for m < rows_x
//   wc[n, j] = w[n, c_j]                       for n < rows_w
//   xc[m, j] = wc[n, j] = 0 for C <= j < round_up(C, 32) (whole 32-column chunks); *count = C.
//
// Launch: grid = ceil((rows_x + rows_w) / 32), block = 256 threads, 32 rows per block (rows
// r < rows_x are x rows, the rest w rows r - rows_x), 4 per warp. The block lists the outlier
// columns in shared memory (LIST_CAPACITY at a time), then each warp copies them for its rows,
// lane l taking (row, entry) pairs l, l + 32, ... of its rows x list (independent loads, many in
// flight; runs of columns coalesce). Element type T of x and xc: __half, __nv_bfloat16 or float.
// Pointers: mask [ceil(cols / 32)] uint32, x [rows_x, ldx] T, q [rows_x, ldq] int8,
// w [rows_w, ldw] int8, xc [rows_x, ldc] T, wc [rows_w, ldc] int8 (ldc >= round_up(cols, 32)),
// count [1] int32.
#include "common.cuh"

using namespace llmint8;

namespace {
constexpr int THREADS = 256, ROWS_PER_BLOCK = 32, ROWS_PER_WARP = ROWS_PER_BLOCK / (THREADS / 32);
constexpr int LIST_CAPACITY = 8192;  // outlier columns listed at a time (32 KB)
}  // namespace

template <typename T>
__global__ void __launch_bounds__(THREADS) gather_outlier_columns(
    const unsigned int* __restrict__ mask, const T* __restrict__ x, int ldx,
    signed char* __restrict__ q, int ldq, const signed char* __restrict__ w, int ldw,
    T* __restrict__ xc, signed char* __restrict__ wc, int ldc, int* __restrict__ count,
    int rows_x, int rows_w, int cols) {
  __shared__ int list[LIST_CAPACITY];
  __shared__ int scan_scratch[THREADS / 32 + 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const long long row0 = (long long)blockIdx.x * ROWS_PER_BLOCK + warp * ROWS_PER_WARP;
  OutlierColumns<THREADS> outliers;
  outliers.count(mask, 0, (cols + 31) / 32, scan_scratch);
  const int total = outliers.total;
  if (blockIdx.x == 0 && threadIdx.x == 0) *count = total;
  for (int window = 0; window < total; window += LIST_CAPACITY) {
    outliers.fill(mask, window, LIST_CAPACITY, list);
    const int n = min(LIST_CAPACITY, total - window);
#pragma unroll 4
    for (int e = lane; e < ROWS_PER_WARP * n; e += 32) {
      const int i = e / n, j = e - i * n, c = list[j];
      const long long row = row0 + i;
      if (row < rows_x) {
        xc[row * ldc + window + j] = x[row * ldx + c];
        q[row * ldq + c] = 0;
      } else if (row < rows_x + rows_w) {
        wc[(row - rows_x) * ldc + window + j] = w[(row - rows_x) * ldw + c];
      }
    }
    __syncthreads();  // the list is read before the next window overwrites it
  }
  // Zeros up to the next multiple of 32 columns: the GEMM multiplies whole chunks.
  const int j = total + lane;
  if (j < (total + 31) / 32 * 32) {
#pragma unroll
    for (int i = 0; i < ROWS_PER_WARP; ++i) {
      const long long row = row0 + i;
      if (row < rows_x) xc[row * ldc + j] = from_float<T>(0.0f);
      else if (row < rows_x + rows_w) wc[(row - rows_x) * ldc + j] = 0;
    }
  }
}

template __global__ void gather_outlier_columns<__half>(const unsigned int*, const __half*, int,
                                                        signed char*, int, const signed char*, int,
                                                        __half*, signed char*, int, int*, int, int,
                                                        int);
template __global__ void gather_outlier_columns<__nv_bfloat16>(
    const unsigned int*, const __nv_bfloat16*, int, signed char*, int, const signed char*, int,
    __nv_bfloat16*, signed char*, int, int*, int, int, int);
template __global__ void gather_outlier_columns<float>(const unsigned int*, const float*, int,
                                                       signed char*, int, const signed char*, int,
                                                       float*, signed char*, int, int*, int, int,
                                                       int);
