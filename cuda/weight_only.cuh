// Device code the weight-only register tiles share (weight_only_linear.cu, weight_only_tma.cu):
// the lanes' weight rows and their 16-byte stream, the mma step of a chunk, and the epilogue that
// adds the warps' sums in warp order and applies the scales and the bias. Both kernels run the
// same products in the same order through these, so their outputs are the same bits.
//
// Lane 4g + q of a warp holds, per 16-row tile rt, the weight rows rt * 16 + g and rt * 16 + 8 + g
// (the mma's A rows) and, per 8-token tile, token g's columns (its B column); mma step s of a
// 64-column chunk takes the lane's columns 4s .. 4s + 3 as its k pairs.
#pragma once
#include "common.cuh"

namespace llmint8 {

// 16 bytes of the weight stream: read once, so kept out of L1, and with a 256-byte L2 prefetch (the
// block's other warps read the rest of those bytes next). Measured on the H200 with weights cold
// in L2: 8192x28672 at one token 66.9 -> 62.0 us, at 16 tokens 83.6 -> 67.8 (benches/NOTES.md v10).
__device__ __forceinline__ int4 stream_weights(const signed char* p) {
  int4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// One lane's weight operands of a chunk of 64 * SPAN columns: per 16-row tile its two rows
// (g, g + 8), 16 * SPAN contiguous bytes each.
template <int ROW_TILES, int SPAN>
struct WeightChunk {
  int4 w[ROW_TILES][2][SPAN];
};

// `p`, opaque to the compiler: it keeps the value in a register where it is used instead of
// recomputing it there from the thread index and the kernel's parameters (the lanes' row pointers,
// benches/NOTES.md v55).
template <typename P>
__device__ __forceinline__ P* keep_in_register(P* p) {
  asm volatile("" : "+l"(p));
  return p;
}
__device__ __forceinline__ int keep_in_register(int v) {
  asm volatile("" : "+r"(v));
  return v;
}

// The lane's weight rows from n0: rows g, g + 8 of each 16-row tile (rows past N clamped to the
// last one and flagged outside), and for chunks of 64 * SPAN columns its first column in each,
// `column` (16 * SPAN * q).
template <int ROW_TILES, bool STREAM = true, bool PIN = STREAM>
struct WeightRows {
  const signed char* CB;
  int ldw, n0, N, g, column;
  // With STREAM (16-byte aligned rows) and every row of the tile inside N (`whole`): the lane's
  // first row from its first column, kept in a register with PIN; its row (rt, h) is
  // (2 * rt + h) * eight_rows bytes further (8 * ldw: under 2^31 for any weight whose rows' offsets
  // fit an int).
  const signed char* lane;
  int eight_rows;
  bool whole;
  __device__ __forceinline__ WeightRows(const signed char* CB, int ldw, int n0, int N, int g, int column)
      : CB(CB), ldw(ldw), n0(n0), N(N), g(g), column(column) {
    whole = STREAM && n0 + 16 * ROW_TILES <= N;
    lane = CB + (long long)min(n0 + g, N - 1) * ldw + column;
    if (PIN) lane = keep_in_register(lane);
    eight_rows = 8 * ldw;
  }
  __device__ __forceinline__ bool inside(int rt, int h) const { return n0 + rt * 16 + h * 8 + g < N; }
  // The row from its column 0.
  __device__ __forceinline__ const signed char* row(int rt, int h) const {
    return CB + (long long)min(n0 + rt * 16 + h * 8 + g, N - 1) * ldw;
  }
};

// A chunk of 64 * SPAN columns from column `base` where every row of the tile is inside N
// (rows.whole) and the chunk ends inside K, rows 16-byte aligned: the lane's pieces with no checks
// (about 70 instructions per chunk fewer than the checked loads in the register tile, benches/NOTES.md
// v55).
template <int ROW_TILES, int SPAN, bool PIN>
__device__ __forceinline__ void stream_chunk(WeightChunk<ROW_TILES, SPAN>& wc,
                                             const WeightRows<ROW_TILES, true, PIN>& rows, int base) {
  const signed char* p = rows.lane + base;
#pragma unroll
  for (int sp = 0; sp < SPAN; ++sp)
#pragma unroll
    for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
      for (int h = 0; h < 2; ++h) wc.w[rt][h][sp] = stream_weights(p + (2 * rt + h) * rows.eight_rows + 16 * sp);
}

// The blocks of 8 warps per SM the register tiles (weight_only_linear.cu with STAGES = 0,
// weight_only_tma.cu) had before the aligned ones kept their row pointers in registers
// (benches/NOTES.md v55), held as their launch bounds' minimum so that none fits fewer blocks than
// before: aligned 5 for one 16-row tile by one token tile and one span, 3 for two of these, else 2
// (48, 70-80 and 94-128 registers then); unaligned 4, then 2 for two or for two token tiles, else 1.
template <int ROW_TILES, int TOKEN_TILES, int SPAN, bool ALIGNED = true>
constexpr int register_tile_blocks() {
  constexpr int tiles = ROW_TILES * TOKEN_TILES * SPAN;
  if (ALIGNED) return tiles == 1 ? 5 : tiles == 2 ? 3 : 2;
  return tiles == 1 ? 4 : (tiles == 2 || TOKEN_TILES == 2) ? 2 : 1;
}

// mma step s of a chunk: the weight's words s (as T pairs, exact) times each token tile's B words.
template <typename T, int ROW_TILES, int TOKEN_TILES, int SPAN>
__device__ __forceinline__ void multiply_step(float (&acc)[ROW_TILES][TOKEN_TILES][4],
                                              const WeightChunk<ROW_TILES, SPAN>& wc,
                                              const int (&b)[TOKEN_TILES][2], int s) {
#pragma unroll
  for (int rt = 0; rt < ROW_TILES; ++rt) {
    int a[4];
    to_pairs(reinterpret_cast<const unsigned*>(&wc.w[rt][0])[s], a[0], a[2], T{});
    to_pairs(reinterpret_cast<const unsigned*>(&wc.w[rt][1])[s], a[1], a[3], T{});
#pragma unroll
    for (int tt = 0; tt < TOKEN_TILES; ++tt) mma_f16(acc[rt][tt], a, b[tt], T{});
  }
}

// A warp's sums into its K group's slice of partial[token][row] (rows from `row0`): c0, c1 are
// weight row g's tokens 2q, 2q + 1; c2, c3 weight row g + 8's.
template <int ROW_TILES, int TOKEN_TILES, int LDP>
__device__ __forceinline__ void store_partial_sums(float (*partial)[LDP],
                                                   const float (&acc)[ROW_TILES][TOKEN_TILES][4],
                                                   int row0, int g, int q) {
#pragma unroll
  for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
    for (int tt = 0; tt < TOKEN_TILES; ++tt)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        partial[tt * 8 + 2 * q + (r & 1)][row0 + rt * 16 + g + (r >> 1) * 8] = acc[rt][tt][r];
}

// The block's outputs (after a __syncthreads): the K groups' sums added in group order, times
// SCB / 127, plus the bias.
template <typename T, int K_GROUPS, int TOKENS, int LDP, int THREADS>
__device__ __forceinline__ void write_weight_only_outputs(const float (*partial)[TOKENS][LDP], int m0,
                                                          int n0, int M, int N, const float* SCB,
                                                          const void* bias, int bias_kind, T* out,
                                                          int ldo) {
  constexpr int ROWS = LDP - 1;
  for (int i = threadIdx.x; i < TOKENS * ROWS; i += THREADS) {
    const int token = i / ROWS, row = i % ROWS;
    const int m = m0 + token, n = n0 + row;
    if (m >= M || n >= N) continue;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < K_GROUPS; ++w) sum += partial[w][token][row];
    out[(long long)m * ldo + n] = from_float<T>(sum * (SCB[n] / 127.0f) + load_bias(bias, bias_kind, n));
  }
}

}  // namespace llmint8
