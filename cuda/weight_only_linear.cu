// Weight-only int8 linear (decode and small batches, sm_80+): the activations stay in fp16 / bf16
// as they come, the int8 weight rows are converted to the same type in registers (exact: |CB| <= 127)
// and multiplied on tensor cores, one launch per layer: no activation quantization, no outlier
// detection (every input column is multiplied in floating point), no workspace.
//
// Math, for X [M, K] (T), CB [N, K] int8 and SCB [N] f32:
//   acc[m,n] = sum_k X[m,k] * CB[n,k]                  (products exact, fp32 accumulation)
//   out[m,n] = acc[m,n] * (SCB[n] / 127) + bias[n]
// i.e. X times the dequantized weight: the error of LLM.int8() without the activations' share.
//
// Tensor cores: mma.sync m16n8k16 with the weight as the A operand (16 output features) and X^T
// as B (8 tokens), so that a single token wastes no weight bandwidth. K order: inside a chunk of
// 64 * SPAN columns lane 4g + q owns the 16 * SPAN contiguous columns starting at 16 * SPAN * q (one
// 16-byte load per weight row and SPAN, two per token and SPAN), and mma step s (0 .. 4 * SPAN - 1)
// takes the lane's columns 4s .. 4s + 3 as its k pairs (2q, 2q + 1) and (2q + 8, 2q + 9). A and B
// follow the same permutation of K, so each product still sums every column once.
//
// Launch: grid = (ceil(M / (8 * TOKEN_TILES)), ceil(N / (16 * ROW_TILES * WARP_ROWS)), 1), block =
// 32 * WARPS threads (8 warps; 16 where K is long, so that each warp's chain of chunks is half as
// long: benches/NOTES.md v53), no dynamic shared memory. A block owns 16 * ROW_TILES * WARP_ROWS
// weight rows and 8 * TOKEN_TILES tokens (token tiles vary fastest, so blocks sharing weight rows run
// together and share them through L2). Its warps form WARP_ROWS groups of 16 * ROW_TILES rows; the
// WARPS / WARP_ROWS warps of a group take the chunks of K in turn (warp w of a group: chunks w,
// w + WARPS / WARP_ROWS, ...), each loading its next chunk while it multiplies the current one, then
// add their sums in shared memory in warp order (deterministic) and apply the scales and the bias.
// Pointers: X [M, ldx] T, CB [N, ldw] int8, SCB [N] f32, bias [N] or null in the dtype bias_kind
// names (common.cuh), out [M, ldo] T. ALIGNED: K, ldx and ldw multiples of 16 and X, CB 16-byte
// aligned (vector loads); otherwise elements are loaded one by one.
//
// Loads: with aligned operands a chunk that ends inside K loads each 16-byte piece from the lane's
// row pointers, kept in registers, with no checks: the weight's where every row of the warp's tile
// is inside N; the tokens' always in the register tiles (tokens past M read the last token's row
// again: their sums are never written), only those inside M in the rings (the others keep zero
// slots: 4096 x 4096 at one row 6.1 -> 5.5 us). Otherwise each piece is checked and zero outside
// (benches/NOTES.md v55, v56).
//
// STAGES = 0: each warp holds two chunks in registers (the next loads while this one multiplies).
// STAGES >= 2 (ALIGNED only): each lane copies its chunks' 16-byte pieces into its own slots of a
// STAGES-deep ring in dynamic shared memory (cp.async, STAGES - 1 chunks in flight per warp
// without registers held for them) and reads them back just before multiplying them; no lane
// reads another's slots, so no barrier is needed. Same arithmetic in the same order as STAGES = 0:
// the outputs are the same bits. Dynamic shared memory: WARPS * STAGES * PIECES * 512 bytes.
#include "common.cuh"
#include "weight_only.cuh"

using namespace llmint8;

namespace {
// 8 consecutive elements of a token's row from column k (zero past K).
template <typename T, bool ALIGNED>
__device__ __forceinline__ int4 load_activations(const T* row, int k, int K) {
  if (ALIGNED) return k < K ? __ldg(reinterpret_cast<const int4*>(row + k)) : make_int4(0, 0, 0, 0);
  int4 v;
  unsigned short* e = reinterpret_cast<unsigned short*>(&v);
#pragma unroll
  for (int i = 0; i < 8; ++i) e[i] = k + i < K ? reinterpret_cast<const unsigned short*>(row)[k + i] : 0;
  return v;
}

// 16 bytes of the weight stream (weight_only.cuh), or byte by byte where not aligned.
template <bool ALIGNED>
__device__ __forceinline__ int4 load_weights(const signed char* p, int k, int K) {
  if constexpr (ALIGNED) return stream_weights(p + k);
  else return load16<false>(p, k, K);
}

// One lane's activation operands of a chunk of 64 * SPAN columns: per 8-token tile its token's
// 16 * SPAN columns (the weight's: WeightChunk, weight_only.cuh).
template <int TOKEN_TILES, int SPAN>
struct ActivationChunk {
  int4 x[TOKEN_TILES][2 * SPAN];
};
}  // namespace

// 16 bytes of the activations into shared memory, kept in L1 too (the other blocks on this SM
// read the same rows).
__device__ __forceinline__ void cp_async16_cached(void* smem, const void* gmem, int src_bytes) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}

template <typename T, int ROW_TILES, int TOKEN_TILES, int WARP_ROWS, int SPAN, bool ALIGNED, int STAGES,
          int WARPS = 8>
__global__ void __launch_bounds__(32 * WARPS, (STAGES == 0 && WARPS == 8)
                                                   ? register_tile_blocks<ROW_TILES, TOKEN_TILES, SPAN, ALIGNED>()
                                                   : 1) weight_only_linear(
    const T* __restrict__ X, int ldx, const signed char* __restrict__ CB, int ldw,
    const float* __restrict__ SCB, const void* __restrict__ bias, int bias_kind, int M, int N,
    int K, T* __restrict__ out, int ldo) {
  constexpr int THREADS = 32 * WARPS;
  static_assert(WARPS % WARP_ROWS == 0, "warps split into row groups x K groups");
  constexpr int CHUNK = 64 * SPAN;  // columns a warp takes at a time: 16 * SPAN per lane
  constexpr int WARP_K = WARPS / WARP_ROWS;  // warps sharing one group of rows, splitting K
  constexpr int WARP_ROWS_N = 16 * ROW_TILES, ROWS = WARP_ROWS_N * WARP_ROWS, TOKENS = 8 * TOKEN_TILES;
  constexpr int LDP = ROWS + 1;  // partial sums in shared memory: [K group][token][row], padded
  __shared__ float partial[WARP_K][TOKENS][LDP];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int rows_of_warp = (warp / WARP_K) * WARP_ROWS_N, k_group = warp % WARP_K;
  const int m0 = blockIdx.x * TOKENS, n0 = blockIdx.y * ROWS + rows_of_warp;
  allow_dependents();
  wait_for_prerequisites();

  // The row pointers kept in registers (aligned operands), but in the register tile of 48
  // registers (one tile each way): there they would spill (benches/NOTES.md v55).
  constexpr bool PIN = ALIGNED && (STAGES > 0 || ROW_TILES * TOKEN_TILES > 1);
  const WeightRows<ROW_TILES, ALIGNED, PIN> rows(CB, ldw, n0, N, g, 16 * SPAN * q);
  // The lane's token rows (past M clamped to the last one and flagged outside) from its first
  // column of a chunk, as WeightRows' `lane`.
  const T* x_lane[TOKEN_TILES];
  bool x_inside[TOKEN_TILES];
#pragma unroll
  for (int tt = 0; tt < TOKEN_TILES; ++tt) {
    const int m = m0 + tt * 8 + g;
    x_inside[tt] = m < M;
    x_lane[tt] = X + (long long)min(m, M - 1) * ldx + 16 * SPAN * q;
    if (PIN) x_lane[tt] = keep_in_register(x_lane[tt]);
  }
  auto x_row = [&](int tt) { return x_lane[tt] - 16 * SPAN * q; };
  // Whether chunk `chunk` takes unchecked loads: aligned, and it ends inside K (and for the weight's,
  // stream_chunk, every row of the tile inside N: rows.whole).
  auto whole = [&](int chunk) { return ALIGNED && (chunk + 1) * CHUNK <= K; };
  using Weights = WeightChunk<ROW_TILES, SPAN>;
  using Activations = ActivationChunk<TOKEN_TILES, SPAN>;
  auto load_w = [&](Weights& wc, int chunk) {
    if constexpr (ALIGNED)
      if (rows.whole && whole(chunk)) return stream_chunk(wc, rows, chunk * CHUNK);
#pragma unroll
    for (int sp = 0; sp < SPAN; ++sp) {
      const int k = chunk * CHUNK + 16 * (SPAN * q + sp);
#pragma unroll
      for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wc.w[rt][h][sp] = rows.inside(rt, h) && k < K ? load_weights<ALIGNED>(rows.row(rt, h), k, K) : make_int4(0, 0, 0, 0);
    }
  };
  auto load_x = [&](Activations& xc, int chunk) {
    if (whole(chunk)) {
#pragma unroll
      for (int sp = 0; sp < SPAN; ++sp)
#pragma unroll
        for (int tt = 0; tt < TOKEN_TILES; ++tt)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            xc.x[tt][2 * sp + e] = __ldg(reinterpret_cast<const int4*>(x_lane[tt] + chunk * CHUNK + 16 * sp + 8 * e));
      return;
    }
#pragma unroll
    for (int sp = 0; sp < SPAN; ++sp) {
      const int k = chunk * CHUNK + 16 * (SPAN * q + sp);
#pragma unroll
      for (int tt = 0; tt < TOKEN_TILES; ++tt) {
        xc.x[tt][2 * sp] = x_inside[tt] ? load_activations<T, ALIGNED>(x_row(tt), k, K) : make_int4(0, 0, 0, 0);
        xc.x[tt][2 * sp + 1] = x_inside[tt] ? load_activations<T, ALIGNED>(x_row(tt), k + 8, K) : make_int4(0, 0, 0, 0);
      }
    }
  };

  float acc[ROW_TILES][TOKEN_TILES][4];
#pragma unroll
  for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
    for (int tt = 0; tt < TOKEN_TILES; ++tt)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[rt][tt][r] = 0.0f;
  auto multiply = [&](const Weights& wc, const Activations& xc) {
#pragma unroll
    for (int s = 0; s < 4 * SPAN; ++s) {
      int b[TOKEN_TILES][2];
#pragma unroll
      for (int tt = 0; tt < TOKEN_TILES; ++tt) {
        const int* x = reinterpret_cast<const int*>(&xc.x[tt][0]);  // 8 * SPAN words
        b[tt][0] = x[2 * s];
        b[tt][1] = x[2 * s + 1];
      }
      multiply_step<T>(acc, wc, b, s);
    }
  };

  const int chunks = (K + CHUNK - 1) / CHUNK;
  // This warp's chunks: k_group + i * WARP_K for i < count.
  const int count = k_group < chunks ? (chunks - k_group + WARP_K - 1) / WARP_K : 0;
  if constexpr (STAGES == 0) {
    // Two chunks in registers: the next one loads while this one is multiplied. In this form (the
    // loop counts the warp's own chunks) the 1x1x1x1 tile takes 48 registers, not 60: five blocks
    // per SM, 8192x28672 at one row 62.4 -> 59.4 us (benches/NOTES.md v24).
    Weights w[2];
    Activations x[2];
    if (count > 0) {
      load_w(w[0], k_group);
      load_x(x[0], k_group);
    }
    for (int first = 0; first < count; first += 2) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int i = first + j;
        if (i < count) {
          if (i + 1 < count) {
            load_w(w[1 - j], k_group + (i + 1) * WARP_K);
            load_x(x[1 - j], k_group + (i + 1) * WARP_K);
          }
          multiply(w[j], x[j]);
        }
      }
    }
  } else {
    static_assert(ALIGNED && STAGES >= 2, "a shared-memory ring needs 16-byte pieces");
    constexpr int W_PIECES = 2 * ROW_TILES * SPAN, PIECES = W_PIECES + 2 * TOKEN_TILES * SPAN;
    extern __shared__ int4 ring[];  // [warp][stage][piece][lane]
    int4* mine = ring + warp * STAGES * PIECES * 32 + lane;
    // Rows outside the weight or X are zero in every stage, written once; the others' pieces are
    // copied per chunk (columns past K zero-filled; a chunk inside K of a tile inside N copies its
    // pieces with no checks).
#pragma unroll
    for (int stage = 0; stage < STAGES; ++stage) {
#pragma unroll
      for (int p = 0; p < PIECES; ++p) {
        const bool inside = p < W_PIECES ? rows.inside(p / (2 * SPAN), p / SPAN % 2)
                                         : x_inside[(p - W_PIECES) / (2 * SPAN)];
        if (!inside) mine[(stage * PIECES + p) * 32] = make_int4(0, 0, 0, 0);
      }
    }
    auto issue = [&](int chunk, int stage) {
      int4* slot = mine + stage * PIECES * 32;
      if (rows.whole && whole(chunk)) {  // tokens past M keep their zero slots
        const signed char* w = rows.lane + chunk * CHUNK;
#pragma unroll
        for (int sp = 0; sp < SPAN; ++sp) {
#pragma unroll
          for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              cp_async16_stream(slot + ((rt * 2 + h) * SPAN + sp) * 32, w + (2 * rt + h) * rows.eight_rows + 16 * sp, 16);
#pragma unroll
          for (int tt = 0; tt < TOKEN_TILES; ++tt)
            if (x_inside[tt])
#pragma unroll
              for (int e = 0; e < 2; ++e)
                cp_async16_cached(slot + (W_PIECES + tt * 2 * SPAN + 2 * sp + e) * 32, x_lane[tt] + chunk * CHUNK + 16 * sp + 8 * e, 16);
        }
        return;
      }
#pragma unroll
      for (int sp = 0; sp < SPAN; ++sp) {
        const int k = chunk * CHUNK + 16 * (SPAN * q + sp), bytes = k < K ? 16 : 0;
#pragma unroll
        for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            if (rows.inside(rt, h))
              cp_async16_stream(slot + ((rt * 2 + h) * SPAN + sp) * 32, bytes ? rows.row(rt, h) + k : CB, bytes);
#pragma unroll
        for (int tt = 0; tt < TOKEN_TILES; ++tt)
          if (x_inside[tt])
#pragma unroll
            for (int e = 0; e < 2; ++e)
              cp_async16_cached(slot + (W_PIECES + tt * 2 * SPAN + 2 * sp + e) * 32, bytes ? x_row(tt) + k + 8 * e : X, bytes);
      }
    };
    auto read = [&](Weights& wc, Activations& xc, int stage) {
      const int4* slot = mine + stage * PIECES * 32;
#pragma unroll
      for (int sp = 0; sp < SPAN; ++sp) {
#pragma unroll
        for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
          for (int h = 0; h < 2; ++h) wc.w[rt][h][sp] = slot[((rt * 2 + h) * SPAN + sp) * 32];
#pragma unroll
        for (int tt = 0; tt < TOKEN_TILES; ++tt)
#pragma unroll
          for (int e = 0; e < 2; ++e) xc.x[tt][2 * sp + e] = slot[(W_PIECES + tt * 2 * SPAN + 2 * sp + e) * 32];
      }
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < count) issue(k_group + s * WARP_K, s);
      cp_async_commit();
    }
    int stage = 0, refill = STAGES - 1;
    for (int i = 0; i < count; ++i) {
      if (i + STAGES - 1 < count) issue(k_group + (i + STAGES - 1) * WARP_K, refill);
      cp_async_commit();
      cp_async_wait<STAGES - 1>();  // chunk i has landed (this lane's own copies)
      asm volatile("" ::: "memory");  // and is read after the wait
      Weights wc;
      Activations xc;
      read(wc, xc, stage);
      multiply(wc, xc);
      stage = stage + 1 == STAGES ? 0 : stage + 1;
      refill = refill + 1 == STAGES ? 0 : refill + 1;
    }
  }

  store_partial_sums(partial[k_group], acc, rows_of_warp, g, q);
  __syncthreads();
  write_weight_only_outputs<T, WARP_K, TOKENS, LDP, THREADS>(partial, m0, blockIdx.y * ROWS, M, N, SCB, bias,
                                                             bias_kind, out, ldo);
}

#define INSTANTIATE_WARPS(T, RT, TT, WR, SPAN, ALIGNED, STAGES, WARPS)                            \
  template __global__ void weight_only_linear<T, RT, TT, WR, SPAN, ALIGNED, STAGES, WARPS>(          \
      const T*, int, const signed char*, int, const float*, const void*, int, int, int, int, T*, \
      int);
#define INSTANTIATE(T, RT, TT, WR, SPAN, ALIGNED, STAGES) \
  INSTANTIATE_WARPS(T, RT, TT, WR, SPAN, ALIGNED, STAGES, 8)
// The tiles benches/kernel_choice.py --weight-only found worth having (four token tiles, deeper
// register pipelines and two-chunk spans with two token tiles cost registers, hence occupancy,
// and measured slower at every shape) with the register pipeline, aligned or not; and the ring
// tiles the plan takes where their blocks fit one wave (a dozen others measured no better;
// benches/NOTES.md v17), among them the 16-row one for two token tiles on weights of few rows
// (v52); and with 16 warps the 32-row ring for two token tiles and its register twin (which
// unaligned operands run in its place), for weights of long rows (v53).
#define INSTANTIATE_TILES(T, ALIGNED)                                                            \
  INSTANTIATE(T, 1, 1, 1, 1, ALIGNED, 0) INSTANTIATE(T, 2, 1, 1, 1, ALIGNED, 0)                   \
  INSTANTIATE(T, 4, 1, 1, 1, ALIGNED, 0) INSTANTIATE(T, 1, 1, 1, 2, ALIGNED, 0)                   \
  INSTANTIATE(T, 2, 1, 1, 2, ALIGNED, 0) INSTANTIATE(T, 1, 1, 2, 2, ALIGNED, 0)                   \
  INSTANTIATE(T, 1, 2, 1, 1, ALIGNED, 0) INSTANTIATE(T, 2, 2, 1, 1, ALIGNED, 0)                   \
  INSTANTIATE(T, 2, 2, 2, 1, ALIGNED, 0) INSTANTIATE(T, 2, 2, 4, 1, ALIGNED, 0)
#define INSTANTIATE_STAGED(T)                                             \
  INSTANTIATE(T, 1, 1, 1, 1, true, 4) INSTANTIATE(T, 2, 2, 1, 1, true, 4) \
  INSTANTIATE(T, 1, 2, 1, 1, true, 4) INSTANTIATE_WARPS(T, 2, 2, 1, 1, true, 2, 16)
#define INSTANTIATE_SIXTEEN_WARPS(T, ALIGNED) INSTANTIATE_WARPS(T, 2, 2, 1, 1, ALIGNED, 0, 16)
INSTANTIATE_TILES(__half, true)
INSTANTIATE_TILES(__half, false)
INSTANTIATE_TILES(__nv_bfloat16, true)
INSTANTIATE_TILES(__nv_bfloat16, false)
INSTANTIATE_STAGED(__half)
INSTANTIATE_STAGED(__nv_bfloat16)
INSTANTIATE_SIXTEEN_WARPS(__half, true)
INSTANTIATE_SIXTEEN_WARPS(__half, false)
INSTANTIATE_SIXTEEN_WARPS(__nv_bfloat16, true)
INSTANTIATE_SIXTEEN_WARPS(__nv_bfloat16, false)
