// Zeroes the outlier columns of int8 rows: q[m, c] = 0 for every c whose bit is set in `mask`.
// Runs between the quantize kernel (whose detect mode zeroes only the elements at or above the
// threshold, since the mask is complete only when every row is done) and an int8 product that
// cannot take the columns out itself (cuBLAS); int8_gemm.cu and int8_gemv.cu zero them in their
// shared-memory tiles instead.
//
// Launch: grid = ceil(rows / 8), block = 256 threads: warp w of block b owns row 8b + w, lane l
// reads mask words l, l + 32, ... and the warp zeroes the set columns of each non-zero word
// together (lane j column j of the word: one coalesced 32-byte store).
// Pointers: q [rows, q_stride] int8, mask [ceil(cols / 32)] uint32.

__global__ void __launch_bounds__(256) zero_outlier_columns(signed char* __restrict__ q,
                                                            const unsigned int* __restrict__ mask,
                                                            long long rows, int cols, int q_stride) {
  const int lane = threadIdx.x & 31;
  const long long row = blockIdx.x * 8LL + (threadIdx.x >> 5);
  if (row >= rows) return;
  signed char* qr = q + row * (long long)q_stride;
  const int words = (cols + 31) / 32;
  for (int w0 = 0; w0 < words; w0 += 32) {
    const unsigned lane_bits = w0 + lane < words ? __ldg(mask + w0 + lane) : 0u;
    for (unsigned todo = __ballot_sync(0xffffffffu, lane_bits != 0u); todo; todo &= todo - 1) {
      const int src = __ffs(todo) - 1;
      const unsigned word_bits = __shfl_sync(0xffffffffu, lane_bits, src);
      if ((word_bits >> lane) & 1u) qr[(w0 + src) * 32 + lane] = 0;
    }
  }
}
