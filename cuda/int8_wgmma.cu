// LLM.int8() on Hopper's warpgroup tensor cores (sm_90a: wgmma; compiled for that target alone,
// see cuda_kernels.ARCH_SPECIFIC): int8_gemm.cu's product and epilogue in one launch, with
// wgmma s8 x s8 -> s32 fed by TMA in place of mma.sync (or of cuBLAS and a separate epilogue):
//   acc[m,n]  = sum_k Xq[m,k] * CB[n,k]                                  (exact int32)
//   o[m,n]    = sum_j Xc[m,j] * CB[n,c_j]                                (fp32 accumulation)
//   out[m,n]  = (acc[m,n] * (absmax[m] / 127) + o[m,n]) * (SCB[n] / 127) + bias[n]
// for Xq [M, K] the int8 rows of the activations (outlier columns zero) with their absmax [M],
// CB [N, K] int8 with SCB [N] f32, and the outlier columns c_0 < ... < c_{C-1} listed in `columns`
// with the activations' values gathered into Xc [M, C] (fp16 / bf16) by
// gather_outlier_columns.cu; C = *outlier_count (none when null). The weight's outlier columns are
// read in place: no gathered copy of the weight.
//
// Layout as weight_only_wgmma.cu: the weight is wgmma's A operand (64 rows per consumer
// warpgroup), the block's NTOK tokens its N, and the accumulators the transposed output tile. Both
// int8 operands come from shared memory (128-byte swizzled rows of 128 K columns: one box each per
// stage, BK = 128 bytes), four k32 wgmmas per stage. Warpgroup 0 produces (one thread issues the
// TMA copies into a ring of STAGES stages), warpgroups 1 and 2 consume; a stage goes back to the
// producer once the wgmmas of the next have been issued.
//
// After the K loop each consumer scales its int32 accumulators by its tokens' absmax / 127 (put
// in shared memory during the K loop by the producer warpgroup's warp 1) into fp32 ones, and
// where there are outlier columns (block z = 0 of a split K) adds their product: chunks of 64
// columns, Xc's staged swizzled in shared memory by the consumers as wgmma's B, the
// weight's bytes at the listed columns converted into A fragments in registers (exact), fp16 /
// bf16 wgmma accumulating onto the scaled sums (the first 16 columns' operands held in registers
// from before the K loop, the weight's bytes picked from the ring's stages: OutlierChunk).
// Without outlier columns and K unsplit the output equals int8_gemm.cu's bit for bit (the same
// fp32 operations); with them, or K split (fp32 partial tiles added), the fp32 sums are added in
// another order.
//
// More than one chunk of outlier columns (the dense outlier part, where `hot_tiles` is given):
// chunk after chunk after the K loop cost 8-15 us each, each scattered weight byte its own read
// (benches/NOTES.md v40, v43). Instead the gather kernel leaves Xo [M, ldc] in Xc's place, the
// activations with every column but the outlier ones zero, written for the K tiles that hold an
// outlier column (bit t of hot_tiles: K tile t), and the K loop multiplies those tiles twice: the
// int8 product as always (Xq's outlier columns are zero), and the weight tile the stream brought,
// converted into A fragments in registers (exact), times Xo's tile (two TMA boxes of 64 columns,
// fp16 / bf16, issued by warp 2 of the producer warpgroup into buffers in the ring's last slots)
// by fp16 / bf16 wgmmas into fp32 sums beside the int32 ones: the outlier part costs a tensor-core
// product over the hot K tiles, whatever the number of columns. Each block of a split K does its
// own K range's.
//
// Split K (SPLITS > 1) as weight_only_wgmma.cu: the SPLITS blocks of an output tile form a
// thread-block cluster along grid z, each multiplies a contiguous range of K tiles and block r
// adds tokens [r, r + 1) * NTOK / SPLITS of all partial tiles through distributed shared memory
// in rank order (deterministic). (A stream-K variant, the weight-only kernel's scheme with int32
// partials, measured slower on every shape: benches/NOTES.md v15.)
//
// 256 tokens (int8_wgmma_pair, prefill): the tile's 128 int32 sums a consumer thread take the
// registers setmaxnreg moves from the producer warpgroup to the consumers; two blocks of adjacent
// weight tiles form a cluster along grid y and share the tokens' box, each copying half of it
// into both rings by one multicast TMA copy (L2 reads per multiply-add a third lower than the
// 128-token tile's), each consumer warp handing a stage back to both producers; no first outlier
// chunk held (OutlierChunk's pieces would not fit beside the sums): every chunk after the K loop,
// Xc's pieces copied by cp.async; the consumers write the tile (the producer has too few
// registers). Grid y is even (a block past N computes zeros it does not write).
//
// Launch: grid = (ceil(M / NTOK), ceil(N / 128), SPLITS), block = 384 threads, dynamic shared
// memory Int8Tile<NTOK, STAGES>::SMEM_BYTES. Parameters: the tensor maps of Xq and CB (int8, boxes
// of 128 columns by NTOK (NTOK / 2 for the pairs) and by 128 rows, 128-byte swizzle), absmax [M] f32, SCB [N] f32, bias [N]
// or null in the dtype bias_kind names (common.cuh), Xc [M, ldc] T (16-byte aligned, ldc a
// multiple of 64, rows padded with zeros to whole chunks; Xo there in the dense case), CB [N, ldw]
// int8 (as the tensor map's), columns [C] int32, outlier_count [1] int32 or null, M, N, K,
// out [M, ldo] T, spent_mask
// [spent_words] uint32 or null: the stream's outlier mask, which the gather kernel has read for the
// last time once this kernel's wait returns; block (0, 0, 0)'s consumers zero it then, so that the
// next call's quantize kernel finds it zeroed (no memset, no arrival counter in the gather),
// early_weights: nonzero where the producer copies the first STAGES weight boxes before it waits
// for the kernel before (the launcher sets it for programmatic dependents whose blocks fit beside
// the quantize kernel's: 1-4 us per replayed forward at 16-64 rows; in plain stream order the
// first X box would only wait behind them). K a multiple of 16; Xq, CB and their row strides
// 16-byte aligned. xo_map: Xo's tensor map (T, boxes of 64 columns by NTOK, 128-byte swizzle;
// any map where hot_tiles is null), hot_tiles [ceil(ceil(K / 128) / 32)] uint32 or null (no
// dense outlier part: the columns are always listed and gathered), weight_only_above: -1, or the
// most outlier columns this kernel multiplies: with more it returns at once and the weight-only
// kernel launched after it computes the output (hopper.cuh's hand-over; early_weights 0 then).
#include "common.cuh"
#include "hopper.cuh"
#include "int8_wgmma_params.cuh"

using namespace llmint8;

namespace {
constexpr int BK = 128;                   // K columns (bytes) per stage
constexpr int CONSUMERS = 2;              // warpgroups that multiply
constexpr int THREADS = 128 * (1 + CONSUMERS);
constexpr int CONSUMER_THREADS = 128 * CONSUMERS;
constexpr int BN = 64 * CONSUMERS;        // weight rows per block
constexpr int W_BYTES = BN * BK;          // a stage's weight tile
constexpr int STEPS = BK / 32;            // wgmma k32 steps per stage
constexpr int CHUNK = OUTLIER_CHUNK;      // outlier columns per step of the outlier product
constexpr int HELD_STEPS = 1;             // k16 steps of the first outlier chunk held (OutlierChunk)
// setmaxnreg of the 256-token tile's warpgroups: 40 + 2 x 232 of the SM's 512 a thread of 128.
constexpr int PRODUCER_REGISTERS = 40, CONSUMER_REGISTERS = 232;

template <int NTOK, int STAGES> struct Int8Tile {
  static constexpr int X_BYTES = NTOK * BK;  // a multiple of 1024 (the swizzle's period)
  static constexpr int STAGE_BYTES = X_BYTES + W_BYTES;
  static constexpr int LDP = BN + 4;         // partial tile row, floats
  static constexpr int RING_BYTES = STAGES * STAGE_BYTES;
  // The dense outlier part's buffers of Xo (a K tile: two boxes of 64 columns, fp16 / bf16, by
  // NTOK tokens) take the ring's last XO_SLOTS slots, with outlier columns or not (the producer
  // then needs no count: benches/NOTES.md v43), so that the block's shared memory stays as it
  // was. None for 128-token tiles: their int32 and fp32 sums and the fragments (160 registers)
  // spill at the 168 a consumer has (setmaxnreg measured no better under NVRTC).
  static constexpr bool DENSE = NTOK <= 64;
  static constexpr int XO_HALF = NTOK * 128;
  static constexpr int XO_BYTES = 2 * XO_HALF;
  static constexpr int XO_SLOTS = NTOK == 32 ? 1 : NTOK == 64 ? 2 : 0;
  static constexpr int SLOTS = STAGES - XO_SLOTS;  // the ring's
  static constexpr int XO_BUFFERS = XO_SLOTS * STAGE_BYTES / XO_BYTES;  // 32: 2, 64: 3
  static constexpr int XO_RING = DENSE ? XO_BUFFERS : 1;  // what the (then unused) loops count by
  static_assert(!DENSE || (XO_BUFFERS >= 2 && SLOTS >= 4), "Xo in flight, and a ring");
  static_assert(NTOK * LDP * 4 <= RING_BYTES, "the partial tile fits in the ring");
  static_assert(NTOK * 2 * CHUNK <= RING_BYTES, "an outlier chunk of Xc fits in the ring");
  static_assert(NTOK % 16 == 0 && NTOK <= 256, "wgmma n");
  // 256-token tiles come in pairs of blocks (a cluster along grid y: two adjacent tiles of weight
  // rows) that share the tokens' box: each block copies half of it into both blocks' rings.
  static constexpr int PAIR = NTOK == 256 ? 2 : 1;
  static constexpr int X_PART = X_BYTES / PAIR;  // what each block of a pair copies
  // The first outlier chunk held from before the K loop (OutlierChunk): not beside the 256-token
  // tile's 128 int32 sums a thread, which the registers hold only alone.
  static constexpr bool HOLDS_CHUNK = NTOK <= 128;
  // Instead the pair prepares its first chunk while the K loop runs: the weight's bytes at the
  // chunk's columns as the fp16 / bf16 A tile (BN rows of 64 values, swizzled) built by the
  // producer warpgroup's idle warps beside the ring, and Xc's chunk (NTOK tokens x 64) copied
  // into the ring's slot after the last K stage (both blocks' halves, as the tokens' box).
  static constexpr int A_BYTES = PAIR > 1 ? BN * 2 * CHUNK : 0;
  static constexpr int XC_PART = NTOK / PAIR * 2 * CHUNK;  // what each block of a pair copies
  static_assert(PAIR * XC_PART <= STAGE_BYTES, "Xc's chunk fits a slot");
  // + alignment of the ring to 1024 bytes; the A tile after the ring (1024-byte aligned too)
  static constexpr int SMEM_BYTES = RING_BYTES + A_BYTES + 1024;
  static_assert(SMEM_BYTES <= 227 * 1024, "one block fits an SM");
};
constexpr int MAX_XO_BUFFERS = 3;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "wgmma_tokens.cuh"  // both operands in shared memory

// d (64 weight rows x N tokens, int32) += A (64 x 32, shared memory) * B (32 x N, shared memory).
template <int N> struct WgmmaS8 : WgmmaTokensS8<N> {};

// The operands of one chunk of CHUNK outlier columns that a consumer thread (warp `warp` of its
// warpgroup, whose weight rows start at `rows` in the tile) holds ahead of their use: for the
// first HELD k16 steps, `at`, the list's columns c0 + 16 s + (2q, 2q + 1, 2q + 8, 2q + 9) (-1
// past its end), and `w`, the weight's bytes of its rows n = g, g + 8 (lane rows) at them; and
// `x`, its share of Xc's rows [m0, m0 + NTOK) as 16-byte pieces (piece p of row r: index 8 r + p,
// zeros past M). Loaded before the K loop, these would wait on memory after it at the end of
// every tile; and the weight's bytes, scattered reads of DRAM, slow the weight's stream: where a
// column lies in the block's K range its bytes are picked from the ring's stages as the stream
// brings them (`pick_outlier_bytes`), the others and Xc's pieces are loads issued before the K
// loop and not waited for (benches/NOTES.md v19).
template <int NTOK, int HELD> struct OutlierChunk {
  static constexpr int PIECES = NTOK * 8 / CONSUMER_THREADS;
  static_assert(PIECES * CONSUMER_THREADS == NTOK * 8, "the consumers share Xc's pieces evenly");
  int at[HELD > 0 ? HELD : 1][4];
  unsigned w[HELD > 0 ? HELD : 1][2][4];
  int4 x[PIECES];
};

__device__ __forceinline__ unsigned load_byte_early(const signed char* p) {
  unsigned v;
  asm volatile("ld.global.nc.u8 %0, [%1];\n" : "=r"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ int4 load_piece_early(const void* p) {
  int4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// Column j's index in the list, or -1 past its `outliers` entries.
__device__ __forceinline__ int listed(const int* __restrict__ columns, int j, int outliers) {
  return j < outliers ? columns[j] : -1;
}

// Loads the chunk from list position c0; the held columns inside the block's K range
// [k_begin, k_end) are left to `pick_outlier_bytes`.
template <typename T, int NTOK, int HELD>
__device__ __forceinline__ void load_outlier_chunk(OutlierChunk<NTOK, HELD>& chunk, int c0, const T* __restrict__ Xc,
                                                   int ldc, const signed char* __restrict__ W, int ldw,
                                                   const int* __restrict__ columns, int outliers, int M, int N,
                                                   int m0, int n0, int rows, int warp, int lane, int k_begin,
                                                   int k_end) {
  const int ctid = threadIdx.x - 128, g = lane / 4, q = lane % 4;
#pragma unroll
  for (int p = 0; p < OutlierChunk<NTOK, HELD>::PIECES; ++p) {
    const int i = ctid + p * CONSUMER_THREADS, r = i / 8;
    chunk.x[p] = make_int4(0, 0, 0, 0);
    if (m0 + r < M) chunk.x[p] = load_piece_early(Xc + static_cast<long long>(m0 + r) * ldc + c0 + 8 * (i % 8));
  }
#pragma unroll
  for (int s = 0; s < HELD; ++s)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int at = listed(columns, c0 + 16 * s + 2 * q + (e & 1) + 8 * (e >> 1), outliers);
      const bool streamed = at >= k_begin && at < k_end;
      chunk.at[s][e] = at;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int n = n0 + rows + 16 * warp + g + 8 * h;
        chunk.w[s][h][e] = 0;
        if (at >= 0 && !streamed && n < N) chunk.w[s][h][e] = load_byte_early(W + static_cast<long long>(n) * ldw + at);
      }
    }
}

// The held bytes at columns inside [k0, k0 + BK), from the weight tile of a stage (`tile`: 128
// rows of BK bytes, 128-byte swizzle; rows past N are zeros from the copy).
template <int NTOK, int HELD>
__device__ __forceinline__ void pick_outlier_bytes(OutlierChunk<NTOK, HELD>& chunk, const unsigned char* tile, int k0,
                                                   int rows, int warp, int lane) {
#pragma unroll
  for (int s = 0; s < HELD; ++s)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const unsigned c = static_cast<unsigned>(chunk.at[s][e] - k0);
      if (c < BK)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = rows + 16 * warp + lane / 4 + 8 * h;
          chunk.w[s][h][e] = tile[r * BK + ((((c >> 4) ^ r) & 7) << 4) + (c & 15)];
        }
    }
}

// The weight's A fragments of a chunk for the lane (g, q) of warp `warp`: the held bytes for the
// first HELD k16 steps, the others read now.
template <typename T, int NTOK, int HELD>
__device__ __forceinline__ void outlier_fragments(int (&a)[CHUNK / 16][4], const OutlierChunk<NTOK, HELD>* chunk,
                                                  int c0, const signed char* __restrict__ W, int ldw,
                                                  const int* __restrict__ columns, int outliers, int N, int n0,
                                                  int rows, int warp, int lane) {
  const int g = lane / 4, q = lane % 4;
#pragma unroll
  for (int s = 0; s < CHUNK / 16; ++s)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = n0 + rows + 16 * warp + g + 8 * h;
      unsigned word = 0;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        unsigned byte = 0;
        if (s < HELD) {
          byte = chunk->w[s < HELD ? s : 0][h][e];
        } else {
          const int at = listed(columns, c0 + 16 * s + 2 * q + (e & 1) + 8 * (e >> 1), outliers);
          if (at >= 0 && n < N) byte = static_cast<unsigned char>(W[static_cast<long long>(n) * ldw + at]);
        }
        word |= (byte & 0xffu) << (8 * e);
      }
      to_pairs(word, a[s][h], a[s][2 + h], T{});
    }
}

// d += the chunk's fp16 / bf16 wgmmas: the A fragments times Xc's chunk staged at `base`.
template <typename T, int NTOK>
__device__ __forceinline__ void multiply_staged_chunk(float (&d)[NTOK / 2], const int (&a)[CHUNK / 16][4],
                                                      unsigned base) {
  fence_operands(d);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < CHUNK / 16; ++s) Wgmma<NTOK, T>::run(d, a[s], descriptor(base + 32 * s));
  wgmma_commit();
  wgmma_wait<0>();
  fence_operands(d);
}

// d += the chunk's product: the weight's A fragments (the held bytes, the other steps' read now),
// Xc's pieces staged swizzled (128-byte rows) in shared memory at `stage` (address `base`) by all
// CONSUMER_THREADS threads, then fp16 / bf16 wgmmas.
template <typename T, int NTOK, int HELD>
__device__ __forceinline__ void multiply_outlier_chunk(float (&d)[NTOK / 2], const OutlierChunk<NTOK, HELD>& chunk,
                                                       int c0, const signed char* __restrict__ W, int ldw,
                                                       const int* __restrict__ columns, int outliers, int N,
                                                       int n0, int rows, int warp, int lane,
                                                       unsigned char* stage, unsigned base) {
  const int ctid = threadIdx.x - 128;
  int a[CHUNK / 16][4];
  outlier_fragments<T, NTOK, HELD>(a, &chunk, c0, W, ldw, columns, outliers, N, n0, rows, warp, lane);
  named_barrier<1, CONSUMER_THREADS>();  // the ring (or the last chunk) is no longer read
#pragma unroll
  for (int p = 0; p < OutlierChunk<NTOK, HELD>::PIECES; ++p) {
    const int i = ctid + p * CONSUMER_THREADS, r = i / 8;
    *reinterpret_cast<int4*>(stage + r * 128 + (((i % 8) ^ (r & 7)) << 4)) = chunk.x[p];
  }
  fence_async_shared();
  named_barrier<1, CONSUMER_THREADS>();  // the chunk is staged
  multiply_staged_chunk<T, NTOK>(d, a, base);
}

// The same for tiles that hold no chunk (Int8Tile::HOLDS_CHUNK false): Xc's rows [m0, m0 + NTOK)
// of the chunk copied into shared memory by cp.async (zeros past M), no registers between.
template <typename T, int NTOK>
__device__ __forceinline__ void multiply_copied_chunk(float (&d)[NTOK / 2], int c0, const T* __restrict__ Xc,
                                                      int ldc, int M, int m0, const signed char* __restrict__ W,
                                                      int ldw, const int* __restrict__ columns, int outliers, int N,
                                                      int n0, int rows, int warp, int lane, unsigned char* stage,
                                                      unsigned base) {
  const int ctid = threadIdx.x - 128;
  named_barrier<1, CONSUMER_THREADS>();  // the ring (or the last chunk) is no longer read
#pragma unroll
  for (int p = 0; p < NTOK * 8 / CONSUMER_THREADS; ++p) {
    const int i = ctid + p * CONSUMER_THREADS, r = i / 8;
    const bool inside = m0 + r < M;
    const T* src = Xc + static_cast<long long>(inside ? m0 + r : 0) * ldc + c0 + 8 * (i % 8);
    cp_async16(stage + r * 128 + (((i % 8) ^ (r & 7)) << 4), src, inside ? 16 : 0);
  }
  cp_async_commit();
  int a[CHUNK / 16][4];
  outlier_fragments<T, NTOK, 0>(a, static_cast<const OutlierChunk<NTOK, 0>*>(nullptr), c0, W, ldw, columns,
                                outliers, N, n0, rows, warp, lane);
  cp_async_wait<0>();
  fence_async_shared();
  named_barrier<1, CONSUMER_THREADS>();  // the chunk is staged
  multiply_staged_chunk<T, NTOK>(d, a, base);
}

// The pair's first outlier chunk's weight tile (wgmma's A operand), built by 64 threads of the
// producer warpgroup while the K loop runs: the weight's rows n0 .. n0 + BN at list position t
// (the thread's) as T, exact (zeros past the list or N), rows of 128 bytes with the 128-byte
// swizzle at `a_tile`.
template <typename T>
__device__ __forceinline__ void build_outlier_weights(unsigned char* a_tile, const signed char* __restrict__ W,
                                                      int ldw, const int* __restrict__ columns, int outliers, int N,
                                                      int n0, int t) {
  const int column = listed(columns, t, outliers), piece = t / 8, within = 2 * (t % 8);
#pragma unroll 8
  for (int r = 0; r < BN; ++r) {
    const int n = n0 + r;
    const signed char byte = column >= 0 && n < N ? W[static_cast<long long>(n) * ldw + column] : 0;
    *reinterpret_cast<T*>(a_tile + r * 128 + ((piece ^ (r & 7)) << 4) + within) = from_float<T>(static_cast<float>(byte));
  }
}

// d += the prepared chunk's fp16 / bf16 wgmmas, both operands in shared memory: the warpgroup's
// rows of the A tile at `a` times Xc's chunk at `xc` (NTOK rows of 128 bytes).
template <typename T, int NTOK>
__device__ __forceinline__ void multiply_prepared_chunk(float (&d)[NTOK / 2], unsigned a, unsigned xc) {
  fence_operands(d);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < CHUNK / 16; ++s) WgmmaTokensSS<NTOK, T>::run(d, descriptor(a + 32 * s), descriptor(xc + 32 * s));
  wgmma_commit();
  wgmma_wait<0>();
  fence_operands(d);
}

// The tokens' box of a stage (K columns from k0 of Xq's rows from m0) into the stage at shared
// address `stage`, completing on `bar`: a pair's blocks each copy their half into both.
template <int NTOK, int STAGES>
__device__ __forceinline__ void copy_tokens(unsigned stage, const TensorMap& x_map, int k0, int m0, unsigned bar) {
  using C = Int8Tile<NTOK, STAGES>;
  if constexpr (C::PAIR > 1) {
    const unsigned rank = cluster_rank();
    copy_box_to_blocks(stage + rank * C::X_PART, x_map, k0, m0 + rank * (NTOK / C::PAIR), bar, (1u << C::PAIR) - 1);
  } else {
    copy_box(stage, x_map, k0, m0, bar);
  }
}

// Producer stage i: K columns [k0, k0 + BK) of Xq's token rows from m0 and of the weight's rows
// from n0 into slot i % SLOTS of the ring at shared address `base`.
template <int NTOK, int STAGES>
__device__ __forceinline__ void produce_int8_stage(int i, unsigned long long* full, unsigned long long* empty,
                                                   unsigned base, const TensorMap& x_map,
                                                   const TensorMap& w_map, int k0, int m0, int n0) {
  using C = Int8Tile<NTOK, STAGES>;
  const unsigned bar = claim_stage<C::SLOTS>(i, full, empty, C::STAGE_BYTES);
  const unsigned stage = base + (i % C::SLOTS) * C::STAGE_BYTES;
  copy_tokens<NTOK, STAGES>(stage, x_map, k0, m0, bar);
  copy_box(stage + C::X_BYTES, w_map, k0, n0, bar);
}

// Consumer stage i of the warpgroup whose weight rows start at `rows` in the tile: wait for the
// stage's copies, issue its four k32 wgmmas on acc, then (this group in flight) wait for stage
// i - 1's groups, call `done_before` (what else those groups read is free then) and hand that
// stage back to the producer (to both producers of a pair: each fills both blocks' slots).
template <int NTOK, int STAGES, typename DoneBefore>
__device__ __forceinline__ void consume_int8_stage(int i, int (&acc)[NTOK / 2], unsigned long long* full,
                                                   unsigned long long* empty, unsigned base, int rows,
                                                   int lane, DoneBefore done_before) {
  using C = Int8Tile<NTOK, STAGES>;
  const int slot = i % C::SLOTS;
  barrier_wait(smem_address(&full[slot]), (i / C::SLOTS) & 1);
  const unsigned stage = base + slot * C::STAGE_BYTES;
  fence_operands(acc);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < STEPS; ++s)
    WgmmaS8<NTOK>::run(acc, descriptor(stage + C::X_BYTES + rows * BK + 32 * s), descriptor(stage + 32 * s));
  wgmma_commit();
  wgmma_wait<1>();
  fence_operands(acc);
  done_before();
  if (i > 0 && lane == 0) {
    const unsigned bar = smem_address(&empty[(i - 1) % C::SLOTS]);
    barrier_arrive(bar);
    if constexpr (C::PAIR > 1) barrier_arrive_at_block(bar, cluster_rank() ^ 1u);
  }
}

// d = acc * row_scales[token] (absmax / 127 of the tile's tokens, in shared memory) for lane q's
// tokens (acc[4j + r]: token 8j + 2q + (r & 1)), the int32 sums first converted to fp32 as
// int8_gemm.cu does.
template <int NTOK>
__device__ __forceinline__ void scale_by_rows(const int (&acc)[NTOK / 2], float (&d)[NTOK / 2],
                                              const float* row_scales, int q) {
#pragma unroll
  for (int j = 0; j < NTOK / 8; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const float scale = row_scales[8 * j + 2 * q + e];
      d[4 * j + e] = static_cast<float>(acc[4 * j + e]) * scale;
      d[4 * j + 2 + e] = static_cast<float>(acc[4 * j + 2 + e]) * scale;
    }
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}  // namespace

template <typename T, int NTOK, int STAGES, int SPLITS>
__device__ __forceinline__ void int8_wgmma_gemm(const TensorMap& x_map, const TensorMap& w_map, const TensorMap& xo_map,
                                                const float* __restrict__ absmax, const float* __restrict__ SCB,
                                                const void* __restrict__ bias, int bias_kind,
                                                const T* __restrict__ Xc, int ldc, const signed char* __restrict__ W,
                                                int ldw, const int* __restrict__ columns,
                                                const int* __restrict__ outlier_count, int M, int N, int K,
                                                T* __restrict__ out, int ldo, unsigned int* __restrict__ spent_mask,
                                                int spent_words, int early_weights,
                                                const unsigned int* __restrict__ hot_tiles) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Int8Tile<NTOK, STAGES>;
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long full[STAGES], empty[STAGES];
  __shared__ __align__(8) unsigned long long xo_full[MAX_XO_BUFFERS], xo_empty[MAX_XO_BUFFERS];
  // The tile's row scales, loaded by warp 1 while the K loop runs (`scales_ready`: its 32 lanes'
  // arrivals): read from global memory after the K loop, their round trip cost each tile ~2-6 µs
  // at the end of its stream (benches/NOTES.md v29).
  __shared__ __align__(8) unsigned long long scales_ready;
  __shared__ __align__(8) unsigned long long a_ready;  // the pair's A tile of its first outlier chunk
  __shared__ float row_scales[NTOK];
  const unsigned raw = smem_address(smem_raw), base = (raw + 1023) & ~1023u;
  unsigned char* ring = smem_raw + (base - raw);
  const unsigned xo_base = base + C::SLOTS * C::STAGE_BYTES;
  const int m0 = blockIdx.x * NTOK, n0 = blockIdx.y * BN;
  const KRange range = split_k<BK, SPLITS>(K, blockIdx.z);
  const int first = range.first, count = range.count;
  const int group = threadIdx.x / 128;

  allow_dependents();
  if (threadIdx.x == 0) {
    barrier_init(smem_address(&scales_ready), 32);
    barrier_init(smem_address(&a_ready), CHUNK);
    for (int b = 0; b < C::XO_BUFFERS; ++b) {
      barrier_init(smem_address(&xo_full[b]), 1);
      barrier_init(smem_address(&xo_empty[b]), 4 * CONSUMERS);
    }
    init_ring<STAGES>(full, empty, 4 * CONSUMERS * C::PAIR);  // its fence covers the others too
  }
  if constexpr (C::PAIR > 1) cluster_barrier();  // the pair's barriers are set before either copies
  else __syncthreads();

  float d[NTOK / 2];
  if (group == 0) {
    // The 256-token tile's consumers hold 128 int32 sums a thread: the producer's registers go to
    // them (without, ptxas serializes their wgmmas for want of registers).
    if constexpr (C::PAIR > 1) release_registers<PRODUCER_REGISTERS>();
    if (threadIdx.x == 0) {
      prefetch_map(x_map);
      prefetch_map(w_map);
      // The first stages' weight boxes stream while the quantize and gather kernels still run:
      // the weight is no output of a kernel that lets this one start early (quantize_rows.cu
      // holds its dependents back wherever it writes anything but a forward's activations).
      // The ring's slots: those the dense outlier part leaves it, with outlier columns or not
      // (deciding on the count would hold the copies back by its load).
      const int early = early_weights ? min(count, C::SLOTS) : 0;
      for (int i = 0; i < early; ++i) {
        const unsigned bar = claim_stage<C::SLOTS>(i, full, empty, C::STAGE_BYTES);
        copy_box(base + i * C::STAGE_BYTES + C::X_BYTES, w_map, (first + i) * BK, n0, bar);
      }
      wait_for_prerequisites();  // the quantized rows, their scales and outlier columns
      for (int i = 0; i < early; ++i)
        copy_tokens<NTOK, STAGES>(base + i * C::STAGE_BYTES, x_map, (first + i) * BK, m0, smem_address(&full[i]));
      for (int i = early; i < count; ++i)
        produce_int8_stage<NTOK, STAGES>(i, full, empty, base, x_map, w_map, (first + i) * BK, m0, n0);
      if constexpr (C::PAIR > 1) {
        // The first outlier chunk's Xc (xo_map: Xc's, boxes of 64 columns by NTOK / PAIR tokens)
        // into the slot after the last K stage, as the tokens' boxes.
        if (outlier_count != nullptr && *outlier_count > 0) {
          const unsigned bar = claim_stage<C::SLOTS>(count, full, empty, C::PAIR * C::XC_PART);
          const unsigned rank = cluster_rank();
          copy_box_to_blocks(base + (count % C::SLOTS) * C::STAGE_BYTES + rank * C::XC_PART, xo_map, 0,
                             m0 + rank * (NTOK / C::PAIR), bar, (1u << C::PAIR) - 1);
        }
      }
    } else if (threadIdx.x / 32 == 1) {
      wait_for_prerequisites();  // the quantize kernel's absmax
      for (int t = threadIdx.x - 32; t < NTOK; t += 32) row_scales[t] = absmax[min(m0 + t, M - 1)] / 127.0f;
      barrier_arrive(smem_address(&scales_ready));
    } else if (C::DENSE && threadIdx.x == 64 && hot_tiles != nullptr) {
      // The dense outlier part's Xo tiles, one per hot K tile, up to XO_BUFFERS ahead of the
      // consumers (a thread of its own: the weight's stream never waits for them).
      prefetch_map(xo_map);
      wait_for_prerequisites();  // the gather kernel's Xo, bits and count
      if (outlier_count != nullptr && *outlier_count > CHUNK)
        copy_hot_tiles<C::XO_RING>(xo_map, hot_tiles, first, count, m0, xo_base, C::XO_HALF, xo_full, xo_empty);
    } else if (C::PAIR > 1 && threadIdx.x >= 64) {
      wait_for_prerequisites();  // the gather kernel's list and count
      const int outliers = outlier_count != nullptr ? *outlier_count : 0;
      if (outliers > 0) {
        build_outlier_weights<T>(ring + C::RING_BYTES, W, ldw, columns, outliers, N, n0, threadIdx.x - 64);
        fence_async_shared();  // the stores, seen by the consumers' wgmmas
        barrier_arrive(smem_address(&a_ready));
      }
    }
  } else {
    if constexpr (C::PAIR > 1) claim_registers<CONSUMER_REGISTERS>();
    wait_for_prerequisites();
    if (spent_mask != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
      for (int w = threadIdx.x - 128; w < spent_words; w += CONSUMER_THREADS) spent_mask[w] = 0u;
    const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, q = lane % 4;
    const int rows = 64 * (group - 1);  // the warpgroup's weight rows in the tile
    // The dense outlier part (more than a chunk of columns, hot_tiles given), or the first outlier
    // chunk's first HELD_STEPS k16 steps held from before the K loop on (OutlierChunk).
    const int listed_count = outlier_count != nullptr ? *outlier_count : 0;
    const bool dense = C::DENSE && hot_tiles != nullptr && listed_count > CHUNK;
    const int outliers = !dense && blockIdx.z == 0 ? listed_count : 0;
    const int k_begin = first * BK, k_end = min(K, (first + count) * BK);
    OutlierChunk<NTOK, HELD_STEPS> held;
    if (C::HOLDS_CHUNK && outliers > 0)
      load_outlier_chunk<T, NTOK>(held, 0, Xc, ldc, W, ldw, columns, outliers, M, N, m0, n0, rows, warp, lane,
                                  k_begin, k_end);
    int acc[NTOK / 2];
#pragma unroll
    for (int j = 0; j < NTOK / 2; ++j) acc[j] = 0;
    if (!C::DENSE || !dense) {
      for (int i = 0; i < count; ++i) {
        consume_int8_stage<NTOK, STAGES>(i, acc, full, empty, base, rows, lane, [] {});
        if (C::HOLDS_CHUNK && outliers > 0)  // stage i is handed back after stage i + 1's wgmmas are issued
          pick_outlier_bytes<NTOK>(held, ring + (i % C::SLOTS) * C::STAGE_BYTES + C::X_BYTES, k_begin + i * BK, rows,
                                   warp, lane);
      }
      wgmma_wait<0>();
      fence_operands(acc);
      barrier_wait(smem_address(&scales_ready), 0);
      scale_by_rows<NTOK>(acc, d, row_scales, q);
    } else {
      // Stage i: its int8 wgmmas issued, then (stage i - 1's groups complete: its slot, its Xo
      // buffer and the fragments free) where tile i is hot, its weight converted into the A
      // fragments while they run and its fp16 / bf16 wgmmas issued onto o.
      float o[NTOK / 2];
#pragma unroll
      for (int j = 0; j < NTOK / 2; ++j) o[j] = 0.0f;
      int a[BK / 16][4];
      for (int i = 0, h = 0, held_buffer = -1; i < count; ++i) {
        consume_int8_stage<NTOK, STAGES>(i, acc, full, empty, base, rows, lane, [&] {
          fence_operands(o);
          if (held_buffer >= 0 && lane == 0) barrier_arrive(smem_address(&xo_empty[held_buffer]));
        });
        held_buffer = -1;
        const int slot = i % C::SLOTS;
        if (tile_hot(hot_tiles, first + i)) {
          const int b = h % C::XO_RING;
          load_weights<T>(a, ring + slot * C::STAGE_BYTES + C::X_BYTES, rows + 16 * warp, lane / 4, q);
          barrier_wait(smem_address(&xo_full[b]), (h / C::XO_RING) & 1);
          const unsigned xo = xo_base + b * C::XO_BYTES;
          wgmma_fence();
#pragma unroll
          for (int s = 0; s < BK / 16; ++s)
            Wgmma<NTOK, T>::run(o, a[s], descriptor(xo + (s / 4) * C::XO_HALF + 32 * (s % 4)));
          wgmma_commit();
          held_buffer = b;
          ++h;
        }
      }
      wgmma_wait<0>();
      fence_operands(acc);
      fence_operands(o);
      barrier_wait(smem_address(&scales_ready), 0);
      scale_by_rows<NTOK>(acc, d, row_scales, q);
#pragma unroll
      for (int j = 0; j < NTOK / 2; ++j) d[j] += o[j];
    }
    if (outliers > 0) {
      int c0 = 0;
      if constexpr (C::HOLDS_CHUNK) {
        multiply_outlier_chunk<T, NTOK>(d, held, 0, W, ldw, columns, outliers, N, n0, rows, warp, lane, ring, base);
      } else {  // the pair's, prepared while the K loop ran
        barrier_wait(smem_address(&a_ready), 0);
        barrier_wait(smem_address(&full[count % C::SLOTS]), (count / C::SLOTS) & 1);
        multiply_prepared_chunk<T, NTOK>(d, base + C::RING_BYTES + rows * 128, base + (count % C::SLOTS) * C::STAGE_BYTES);
      }
      c0 = CHUNK;
      for (; c0 < outliers && !C::HOLDS_CHUNK; c0 += CHUNK)
        multiply_copied_chunk<T, NTOK>(d, c0, Xc, ldc, M, m0, W, ldw, columns, outliers, N, n0, rows, warp, lane,
                                       ring, base);
      for (; c0 < outliers; c0 += CHUNK) {
        OutlierChunk<NTOK, 0> next;
        load_outlier_chunk<T, NTOK>(next, c0, Xc, ldc, W, ldw, columns, outliers, M, N, m0, n0, rows, warp, lane, 0,
                                    0);
        multiply_outlier_chunk<T, NTOK>(d, next, c0, W, ldw, columns, outliers, N, n0, rows, warp, lane, ring, base);
      }
    }
    if constexpr (C::PAIR > 1)  // the producer, down to its few registers, takes no part
      write_tile_by_consumers<T, NTOK, BN, C::LDP, CONSUMER_THREADS>(d, ring, group, threadIdx.x - 128, m0, n0, M, N,
                                                                      out, ldo, SCB, bias, bias_kind);
  }
  if constexpr (C::PAIR > 1) {
    cluster_barrier();  // no block leaves while its pair may still arrive on its barriers
  } else {
    write_tile<T, NTOK, BN, C::LDP, SPLITS, THREADS>(d, ring, m0, n0, M, N, out, ldo, SCB, bias, bias_kind);
  }
#else
  __trap();  // compiled for sm_90a only (cuda_kernels.ARCH_SPECIFIC)
#endif
}

template <typename T, int NTOK, int STAGES>
__global__ void __launch_bounds__(THREADS, 1) int8_wgmma(INT8_WGMMA_PARAMS) {
  if (hands_over_to_weight_only(outlier_count, weight_only_above, spent_mask, spent_words)) return;
  int8_wgmma_gemm<T, NTOK, STAGES, 1>(INT8_WGMMA_ARGS);
}
template <typename T, int NTOK, int STAGES, int SPLITS>
__global__ void __launch_bounds__(THREADS, 1) CLUSTER_ALONG_Z(SPLITS) int8_wgmma_split(INT8_WGMMA_PARAMS) {
  if (hands_over_to_weight_only(outlier_count, weight_only_above, spent_mask, spent_words)) return;
  int8_wgmma_gemm<T, NTOK, STAGES, SPLITS>(INT8_WGMMA_ARGS);
}

// 256-token tiles by pairs of 128-row weight tiles (grid y even), the tokens' box shared.
template <typename T, int NTOK, int STAGES>
__global__ void __launch_bounds__(THREADS, 1) CLUSTER_ALONG_Y(2) int8_wgmma_pair(INT8_WGMMA_PARAMS) {
  static_assert(Int8Tile<NTOK, STAGES>::PAIR == 2, "a tile that pairs its blocks");
  if (hands_over_to_weight_only(outlier_count, weight_only_above, spent_mask, spent_words)) return;
  int8_wgmma_gemm<T, NTOK, STAGES, 1>(INT8_WGMMA_ARGS);
}

#define INSTANTIATE(T, NTOK, STAGES)                                            \
  template __global__ void int8_wgmma<T, NTOK, STAGES> SIGNATURE(T);            \
  template __global__ void int8_wgmma_split<T, NTOK, STAGES, 2> SIGNATURE(T);   \
  template __global__ void int8_wgmma_split<T, NTOK, STAGES, 4> SIGNATURE(T);
// Token tiles of 32, 64 and 128 by 128 weight rows, and 256 in pairs; stages so that about 160-200
// KB are in flight.
#define INSTANTIATE_TILES(T) INSTANTIATE(T, 32, 10) INSTANTIATE(T, 64, 8) INSTANTIATE(T, 128, 6) \
  template __global__ void int8_wgmma_pair<T, 256, 4> SIGNATURE(T);
INSTANTIATE_TILES(__half)
INSTANTIATE_TILES(__nv_bfloat16)
