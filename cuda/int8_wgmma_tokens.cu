// LLM.int8() on Hopper's warpgroup tensor cores with the tokens as wgmma's A operand (sm_90a;
// compiled for that target alone, see cuda_kernels.ARCH_SPECIFIC). The same math, operands and
// parameters as int8_wgmma.cu:
//   acc[m,n]  = sum_k Xq[m,k] * CB[n,k]                                  (exact int32)
//   o[m,n]    = sum_j Xc[m,j] * CB[n,c_j]                                (fp32 accumulation)
//   out[m,n]  = (acc[m,n] * (absmax[m] / 127) + o[m,n]) * (SCB[n] / 127) + bias[n]
//
// int8_wgmma.cu makes the weight wgmma's A operand, 64 weight rows per consumer warpgroup, so
// its blocks hold 128 weight rows (4096x11008: 86 blocks on 132 SMs; 8192x28672: 224 blocks, two
// waves). Here the tokens are A (64 per consumer warpgroup) and the weight is B, whose n takes
// BN weight rows (any multiple of 16 up to 256): the grid is sized to the GPU (4096x11008 at BN =
// 96: 115 blocks; 8192x28672 at 224: 128), the accumulators are the output tile as it lies in
// memory (tokens by weight rows), and a block of 128 tokens by 96 rows needs half the registers
// (benches/NOTES.md v37: the product alone 1.7 us faster on 4096x11008, 6 on 8192x28672 at 128
// rows; v38: the forward at threshold 6 1-2 and 6-16 us faster). cuda.plan() takes it for
// weights of 8192 rows or more where int8_wgmma.cu would leave K unsplit.
//
// Warpgroup 0: thread 0 issues the TMA copies (a box of Xq, 128 K columns by 64 * CONSUMERS
// tokens, and one of the weight, 128 columns by BN rows, both int8 with the 128-byte swizzle),
// warp 1 loads the tile's row scales into shared memory, warps 2 and 3 stage the outlier part
// (below); warpgroups 1 .. CONSUMERS multiply (s8 wgmma m64 nBN k32, four per stage).
//
// The outlier part (block z = 0 of a split K): chunks of OUTLIER_CHUNK listed columns, Xc's rows
// (fp16 / bf16) and the weight's bytes at the chunk's columns (converted, exact) staged in the
// 128-byte swizzle the descriptors name; the consumers, after the K loop and the row scaling, add
// each chunk's fp16 / bf16 wgmmas to their fp32 sums. The first chunk goes to a staging area
// beside the ring (the staging warps, `staged`); its weight bytes are picked from the ring's
// stages as the stream brings them (the staging warps follow the ring, each taking alternate
// slots, a lane per weight row: each stage waits for their arrival too), as int8_wgmma.cu does:
// loaded from memory, each a scattered read of DRAM, they slowed the weight's stream by 6-28 us
// (benches/NOTES.md v38). Only its columns past a split block's K range are loaded. Later chunks
// (more than OUTLIER_CHUNK columns) go to the ring's slots once the consumers and the staging
// warps are done with the ring (`ring_free`): all four warps of warpgroup 0 load them, up to
// STAGES chunks ahead of the consumers (`tail_full`, `tail_empty`), the weight's bytes 8 list
// positions at a time (one 8-byte load where they are 8 consecutive columns). One chunk at a time
// through the staging area, loaded by two warps, cost 8-15 us a chunk (benches/NOTES.md v40).
//
// More than one chunk of columns where `hot_tiles` is given (the dense outlier part, the tiles
// whose two sets of sums fit the registers: TokensTile::DENSE): as int8_wgmma.cu's, the gather
// kernel leaves Xo in Xc's place (the activations with every column but the outlier ones zero, for
// the K tiles that hold one: bit t of hot_tiles) and lists nothing, and the K loop multiplies each
// hot tile twice, the int8 product as always and Xo's tile times the weight tile the stream
// brought, by fp16 / bf16 wgmmas onto fp32 sums beside the int32 ones. Here the weight is wgmma's
// B operand, which only shared memory holds: the consumers convert the stage's weight tile
// (exact) into a buffer of fp16 / bf16 rows (`w16`, one: a hot tile's conversion waits for the
// previous one's wgmmas, complete once the next stage's int8 wgmmas are issued), while that
// stage's int8 wgmmas run; warp 3 of warpgroup 0 copies Xo's tiles (two TMA boxes of 64 columns
// by the block's tokens) into XO_BUFFERS buffers ahead of them. The buffers take the staging area
// and the ring's last slots: the ring has DENSE_SLOTS slots then, STAGES otherwise (the producer
// issues its first DENSE_SLOTS stages before it reads the count). The staging warps only hand the
// stages back. Each block of a split K does its own K range's.
//
// Split K and the end of a block as int8_wgmma.cu (write_partial_sums; the partial tile is
// [token][weight row], as the accumulators lie), as are the mask zeroing of block (0, 0, 0)
// (spent_mask) and early_weights. Without outlier columns and K unsplit the output equals
// int8_wgmma.cu's bit for bit (the same fp32 operations).
//
// Launch: grid = (ceil(M / (64 * CONSUMERS)), ceil(N / BN), SPLITS), block = 128 * (1 +
// CONSUMERS) threads, dynamic shared memory TokensTile<BN, CONSUMERS, STAGES>::SMEM_BYTES.
// Parameters as int8_wgmma.cu's, the weight's tensor map with boxes of 128 x BN.
#include "common.cuh"
#include "hopper.cuh"
#include "int8_wgmma_params.cuh"

using namespace llmint8;

namespace {
constexpr int BK = 128;              // K columns (bytes) per stage
constexpr int CHUNK = OUTLIER_CHUNK;  // outlier columns per staged chunk
[[maybe_unused]] constexpr int STAGERS = 64;  // warps 2 and 3 of warpgroup 0
[[maybe_unused]] constexpr int LOADERS = 128;  // warpgroup 0: later chunks

template <int BN, int CONSUMERS, int STAGES> struct TokensTile {
  static constexpr int TOKENS = 64 * CONSUMERS;
  static constexpr int THREADS = 128 * (1 + CONSUMERS);
  static constexpr int X_BYTES = TOKENS * BK;  // a multiple of 1024 (the swizzle's period)
  static constexpr int W_BYTES = BN * BK;
  static constexpr int STAGE_BYTES = X_BYTES + W_BYTES;
  static constexpr int RING_BYTES = STAGES * STAGE_BYTES;
  // The staging area: a chunk of Xc (TOKENS rows of CHUNK halves: 128 bytes) and of the weight's
  // outlier columns (BN rows of CHUNK halves).
  static constexpr int XC_BYTES = TOKENS * CHUNK * 2;
  static constexpr int WC_BYTES = BN * CHUNK * 2;
  static constexpr int LDP = BN + 8;  // partial tile row, floats (+ 8: no bank conflicts of its float2 stores)
  static constexpr int EPILOGUE_THREADS = THREADS / (BN / 4) * (BN / 4);
  static_assert(BN % 16 == 0 && BN <= 256, "wgmma n, 1024-byte aligned tiles");
  static_assert(CHUNK * 2 == 128, "a staged chunk row is one 128-byte swizzle row");
  static_assert(TOKENS * LDP * 4 <= RING_BYTES, "the partial tile fits in the ring");
  static constexpr int SMEM_BYTES = RING_BYTES + XC_BYTES + WC_BYTES + 1024;  // + alignment
  static_assert(SMEM_BYTES <= 227 * 1024, "one block fits an SM");
  // The dense outlier part: fp32 sums beside the int32 ones (BN / 2 registers more) fit the
  // one-consumer tiles of up to 128 rows (255 registers a thread) and the two-consumer tile of 96
  // rows (168).
  static constexpr bool DENSE = BN <= 128 && (CONSUMERS == 1 || BN <= 96);
  static constexpr int W16_HALF = BN * 128;  // a row of 64 fp16 / bf16 weights per weight row
  static constexpr int W16_BYTES = 2 * W16_HALF;
  static constexpr int XO_HALF = TOKENS * 128;  // a box of 64 columns of Xo
  static constexpr int XO_BYTES = 2 * XO_HALF;
  static constexpr int XO_BUFFERS = 2;
  static constexpr int DENSE_BYTES = W16_BYTES + XO_BUFFERS * XO_BYTES;
  static constexpr int DENSE_SLOTS =
      DENSE ? (RING_BYTES + XC_BYTES + WC_BYTES - DENSE_BYTES) / STAGE_BYTES : STAGES;
  static_assert(!DENSE || DENSE_SLOTS >= 4, "a ring beside the dense part's buffers");
  // Two consumers with the dense part: held to the registers they had without it (128, no
  // spills), so that a block still fits an SM beside a gather kernel's block (48 x 256) under
  // programmatic dependent launch (145 unbounded; not measured apart: benches/NOTES.md v44).
  static constexpr int MAX_REGISTERS = DENSE && CONSUMERS == 2 ? 128 : 255;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "wgmma_tokens.cuh"

__device__ __forceinline__ int swizzled(int row, int piece) { return row * 128 + ((piece ^ (row & 7)) << 4); }

// Xc's rows [m0, m0 + TOKENS) at list positions [c0, c0 + CHUNK) (zeros past M) at `xs` as rows
// of CHUNK halves in the 128-byte swizzle (thread t of THREADS; every load in flight at once).
template <typename T, int TOKENS, int THREADS>
__device__ __forceinline__ void stage_xc(int c0, const T* __restrict__ Xc, int ldc, int M, int m0, unsigned char* xs,
                                         int t) {
  static_assert(TOKENS * 8 % THREADS == 0, "the threads share the pieces evenly");
  constexpr int E = TOKENS * 8 / THREADS;
  int4 v[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int i = t + THREADS * e, r = i / 8, p = i % 8;
    v[e] = m0 + r < M ? *reinterpret_cast<const int4*>(Xc + static_cast<long long>(m0 + r) * ldc + c0 + 8 * p)
                      : make_int4(0, 0, 0, 0);
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int i = t + THREADS * e;
    *reinterpret_cast<int4*>(xs + swizzled(i / 8, i % 8)) = v[e];
  }
}

// The weight's rows [n0, n0 + BN) at list positions [c0, c0 + CHUNK) (zeros past the list and
// past N) at `ws` as rows of CHUNK halves in the 128-byte swizzle (thread t of THREADS). Thread
// t's pieces all hold positions c0 + 8 p .. + 7 with p = t % 8: one 8-byte load a row where they
// are 8 consecutive, aligned columns (dense outlier columns), else 8 byte loads.
template <typename T, int BN, int THREADS>
__device__ __forceinline__ void stage_weight_chunk(int c0, const signed char* __restrict__ W, int ldw,
                                                   const int* __restrict__ columns, int outliers, int N, int n0,
                                                   unsigned char* ws, int t) {
  static_assert(BN * 8 % THREADS == 0 && THREADS % 8 == 0, "the threads share the pieces evenly");
  constexpr int E = BN * 8 / THREADS;
  const int p = t % 8;
  int at[8];
#pragma unroll
  for (int b = 0; b < 8; ++b) at[b] = c0 + 8 * p + b < outliers ? columns[c0 + 8 * p + b] : -1;
  const bool run = at[7] >= 0 && at[7] - at[0] == 7 && at[0] % 8 == 0;  // the list ascends
  unsigned word[E][2];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int n = n0 + t / 8 + (THREADS / 8) * e;
    const signed char* row = W + static_cast<long long>(n) * ldw;
    word[e][0] = word[e][1] = 0u;
    if (n < N && run) {
      const uint2 v = *reinterpret_cast<const uint2*>(row + at[0]);
      word[e][0] = v.x;
      word[e][1] = v.y;
    } else if (n < N) {
#pragma unroll
      for (int b = 0; b < 8; ++b)
        if (at[b] >= 0) word[e][b / 4] |= static_cast<unsigned>(static_cast<unsigned char>(row[at[b]])) << (8 * (b % 4));
    }
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    int4 v;
    to_pairs(word[e][0], v.x, v.y, T{});
    to_pairs(word[e][1], v.z, v.w, T{});
    *reinterpret_cast<int4*>(ws + swizzled(t / 8 + (THREADS / 8) * e, p)) = v;
  }
}

// The signed byte whose bits are `b` as T, exactly: 2^23 + (b + 128) minus 2^23 + 128 in fp32 (an
// add, where int-to-float conversion runs at a quarter of the rate).
template <typename T> __device__ __forceinline__ T exact_byte(unsigned b) {
  return from_float<T>(__uint_as_float(0x4B000000u | ((b ^ 0x80u) & 0xFFu)) - 8388736.0f);
}

// List positions j0, j0 + step, .. below j1 of the first chunk (position j's column: lane j % 32
// of `low` for j < 32, of `high` past it; j0, j1 the same for the warp) for the weight rows [0, BN)
// at `ws` (row r, half j of its swizzled 128-byte row), by one warp: lane l takes the rows l + 32 u,
// whose bytes `load(c, u)` gives (bits of the signed byte at column c), all of a column's loads in
// flight at once; the rows' swizzle is the lane's (r & 7 = l & 7). A column at a time by both
// staging warps, one shuffle, load and conversion after another per row, cost 0.25 us a column at
// 32 rows on 4096x11008 (benches/NOTES.md v49).
template <typename T, int BN, typename Load>
__device__ __forceinline__ void put_columns(unsigned char* ws, int low, int high, int j0, int j1, int step, int lane,
                                            Load load) {
  constexpr int ROWS = (BN + 31) / 32;
  for (int j = j0; j < j1; j += step) {
    const int c = __shfl_sync(0xffffffffu, j < 32 ? low : high, j % 32);
    unsigned v[ROWS];
#pragma unroll
    for (int u = 0; u < ROWS; ++u) v[u] = lane + 32 * u < BN ? load(c, u) : 0u;
    unsigned char* at = ws + swizzled(lane, j / 8) + 2 * (j % 8);
#pragma unroll
    for (int u = 0; u < ROWS; ++u)
      if (lane + 32 * u < BN) *reinterpret_cast<T*>(at + 32 * 128 * u) = exact_byte<T>(v[u]);
  }
}

// How many of the first chunk's list positions hold a column below `limit` (the list ascends;
// `low`, `high` as put_columns', -1 past the list). Every lane of the warp calls it.
__device__ __forceinline__ int listed_below(int low, int high, int limit) {
  return __popc(__ballot_sync(0xffffffffu, low >= 0 && low < limit)) +
         __popc(__ballot_sync(0xffffffffu, high >= 0 && high < limit));
}
// The dense outlier part's B operand: a stage's weight tile (`tile`: BN rows of BK int8 bytes,
// 128-byte swizzle) as fp16 / bf16 (exact) at `w16`, two halves (K columns [0, 64), [64, 128)) of
// BN rows of 128 bytes in the same swizzle (thread t of THREADS, a 16-byte piece at a time).
template <typename T, int BN, int THREADS>
__device__ __forceinline__ void convert_weight_tile(const unsigned char* tile, unsigned char* w16, int t) {
  static_assert(BN * 8 % THREADS == 0, "the threads share the pieces evenly");
#pragma unroll 1  // unrolled: 33 registers more (int8_wgmma_tokens<T, 96, 1, 10>: 161)
  for (int e = 0; e < BN * 8 / THREADS; ++e) {
    const int i = t + THREADS * e, r = i / 8, p = i % 8;
    const int4 v = *reinterpret_cast<const int4*>(tile + swizzled(r, p));
    int4 lo, hi;  // columns 16 p .. + 7 and 16 p + 8 .. + 15
    to_pairs(v.x, lo.x, lo.y, T{});
    to_pairs(v.y, lo.z, lo.w, T{});
    to_pairs(v.z, hi.x, hi.y, T{});
    to_pairs(v.w, hi.z, hi.w, T{});
    // Pieces 0-3 go to the first half, 4-7 to the second, each as pieces 2 (p % 4) and + 1 of row
    // r; the second half's threads store their odd piece first (the same row of both halves lies
    // on the same banks).
    unsigned char* row = w16 + (p / 4) * (BN * 128);
    const int piece = 2 * (p % 4), upper = p / 4;
    *reinterpret_cast<int4*>(row + swizzled(r, piece + upper)) = upper ? hi : lo;
    *reinterpret_cast<int4*>(row + swizzled(r, piece + 1 - upper)) = upper ? lo : hi;
  }
}

// Consumer stage i on a ring of `slots` slots, for the warpgroup whose tokens start at `tokens`
// in the tile: waits for the stage's copies, issues its four k32 wgmmas onto acc, then (this group
// in flight) waits for the groups before it; returns the stage's slot.
template <int BN, int STAGE_BYTES, int X_BYTES>
__device__ __forceinline__ int consume_tokens_stage(int i, int slots, int (&acc)[BN / 2], unsigned long long* full,
                                                    unsigned base, int tokens) {
  const int slot = i % slots;
  barrier_wait(smem_address(&full[slot]), (i / slots) & 1);
  const unsigned stage = base + slot * STAGE_BYTES;
  fence_operands(acc);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < BK / 32; ++s)
    WgmmaTokensS8<BN>::run(acc, descriptor(stage + tokens * BK + 32 * s), descriptor(stage + X_BYTES + 32 * s));
  wgmma_commit();
  wgmma_wait<1>();
  fence_operands(acc);
  return slot;
}

// Whether the block runs the dense outlier part (the same for every thread; the count is read
// only where the tile has it).
template <bool DENSE>
__device__ __forceinline__ bool dense_part(const int* __restrict__ outlier_count,
                                           const unsigned int* __restrict__ hot_tiles) {
  return DENSE && hot_tiles != nullptr && outlier_count != nullptr && *outlier_count > CHUNK;
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}  // namespace

template <typename T, int BN, int CONSUMERS, int STAGES, int SPLITS>
__device__ __forceinline__ void int8_tokens_gemm(const TensorMap& x_map, const TensorMap& w_map,
                                                 const TensorMap& xo_map,
                                                 const float* __restrict__ absmax, const float* __restrict__ SCB,
                                                 const void* __restrict__ bias, int bias_kind,
                                                 const T* __restrict__ Xc, int ldc, const signed char* __restrict__ W,
                                                 int ldw, const int* __restrict__ columns,
                                                 const int* __restrict__ outlier_count, int M, int N, int K,
                                                 T* __restrict__ out, int ldo, unsigned int* __restrict__ spent_mask,
                                                 int spent_words, int early_weights,
                                                 const unsigned int* __restrict__ hot_tiles) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = TokensTile<BN, CONSUMERS, STAGES>;
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long full[STAGES], empty[STAGES], scales_ready, staged, ring_free;
  __shared__ __align__(8) unsigned long long tail_full[STAGES], tail_empty[STAGES];  // later chunks
  __shared__ __align__(8) unsigned long long xo_full[C::XO_BUFFERS], xo_empty[C::XO_BUFFERS];  // dense part
  __shared__ float row_scales[C::TOKENS];
  const unsigned raw = smem_address(smem_raw), base = (raw + 1023) & ~1023u;
  unsigned char* ring = smem_raw + (base - raw);
  unsigned char* xs = ring + C::RING_BYTES;  // the staging area
  unsigned char* ws = xs + C::XC_BYTES;
  unsigned char* w16 = ring + C::DENSE_SLOTS * C::STAGE_BYTES;  // the dense part's buffers
  const unsigned w16_base = base + C::DENSE_SLOTS * C::STAGE_BYTES, xo_base = w16_base + C::W16_BYTES;
  const int m0 = blockIdx.x * C::TOKENS, n0 = blockIdx.y * BN;
  const KRange range = split_k<BK, SPLITS>(K, blockIdx.z);
  const int first = range.first, count = range.count;
  const int group = threadIdx.x / 128, lane = threadIdx.x % 32;

  allow_dependents();
  if (threadIdx.x == 0) {
    barrier_init(smem_address(&scales_ready), 32);
    barrier_init(smem_address(&staged), 1);
    barrier_init(smem_address(&ring_free), 4 * CONSUMERS + 2);  // the consumers' and staging warps
    for (int s = 0; s < STAGES; ++s) {
      barrier_init(smem_address(&tail_full[s]), 4);  // the four warps of warpgroup 0
      barrier_init(smem_address(&tail_empty[s]), 4 * CONSUMERS);
    }
    for (int b = 0; b < C::XO_BUFFERS; ++b) {
      barrier_init(smem_address(&xo_full[b]), 1);
      barrier_init(smem_address(&xo_empty[b]), 4 * CONSUMERS);
    }
    // a stage goes back once the consumers' warps and the two staging warps have arrived
    init_ring<STAGES>(full, empty, 4 * CONSUMERS + 2);  // its fence covers the others too
  }
  __syncthreads();

  float d[BN / 2];
  if (group == 0) {
    const int warp = threadIdx.x / 32;
    if (threadIdx.x == 0) {
      prefetch_map(x_map);
      prefetch_map(w_map);
      // The first stages' weight boxes stream while the kernels before still run (the weight is
      // no output of a kernel that lets this one start early: int8_wgmma.cu's early_weights).
      // The first DENSE_SLOTS stages lie in the same slots with the dense part or without: they
      // go before the count is read.
      const int ahead = min(count, C::DENSE_SLOTS), early = early_weights ? ahead : 0;
      for (int i = 0; i < early; ++i) {
        const unsigned bar = claim_stage<STAGES>(i, full, empty, C::STAGE_BYTES);
        copy_box(base + i * C::STAGE_BYTES + C::X_BYTES, w_map, (first + i) * BK, n0, bar);
      }
      wait_for_prerequisites();  // the quantized rows
      for (int i = 0; i < ahead; ++i) {
        const unsigned stage = base + i * C::STAGE_BYTES, bar = smem_address(&full[i]);
        if (i >= early) {
          claim_stage<STAGES>(i, full, empty, C::STAGE_BYTES);
          copy_box(stage + C::X_BYTES, w_map, (first + i) * BK, n0, bar);
        }
        copy_box(stage, x_map, (first + i) * BK, m0, bar);
      }
      const int slots = dense_part<C::DENSE>(outlier_count, hot_tiles) ? C::DENSE_SLOTS : STAGES;
      for (int i = ahead; i < count; ++i) {
        const unsigned bar = claim_slot(i, slots, full, empty, C::STAGE_BYTES);
        const unsigned stage = base + (i % slots) * C::STAGE_BYTES;
        copy_box(stage, x_map, (first + i) * BK, m0, bar);
        copy_box(stage + C::X_BYTES, w_map, (first + i) * BK, n0, bar);
      }
    } else if (warp == 1) {
      wait_for_prerequisites();  // the quantize kernel's absmax
      for (int t = lane; t < C::TOKENS; t += 32) row_scales[t] = absmax[min(m0 + t, M - 1)] / 127.0f;
      barrier_arrive(smem_address(&scales_ready));
    } else if (warp >= 2) {
      wait_for_prerequisites();  // the gather kernel's Xc, list and count (or Xo and its bits)
      if (dense_part<C::DENSE>(outlier_count, hot_tiles)) {
        if (warp == 3 && lane == 0) {
          prefetch_map(xo_map);
          copy_hot_tiles<C::XO_BUFFERS>(xo_map, hot_tiles, first, count, m0, xo_base, C::XO_HALF, xo_full, xo_empty);
        } else if (warp == 2) {
          // Nothing to pick: each stage handed back for both staging warps once it has arrived.
          for (int i = 0; i < count; ++i) {
            const int slot = i % C::DENSE_SLOTS;
            barrier_wait(smem_address(&full[slot]), (i / C::DENSE_SLOTS) & 1);
            if (lane == 0) {
              barrier_arrive(smem_address(&empty[slot]));
              barrier_arrive(smem_address(&empty[slot]));
            }
          }
        }
      } else {
        const int outliers = outlier_count != nullptr && blockIdx.z == 0 ? *outlier_count : 0;
        const int t = threadIdx.x - 64, in_first = min(outliers, CHUNK), k_end = min(K, (first + count) * BK);
        // The first chunk's columns: list positions lane and 32 + lane (-1 past the list).
        const int low = lane < in_first ? columns[lane] : -1, high = 32 + lane < in_first ? columns[32 + lane] : -1;
        if (outliers > 0) {
          stage_xc<T, C::TOKENS, STAGERS>(0, Xc, ldc, M, m0, xs, t);
#pragma unroll 4
          for (int e = 0; e < BN * 8 / STAGERS; ++e) reinterpret_cast<int4*>(ws)[t + STAGERS * e] = make_int4(0, 0, 0, 0);
          named_barrier<2, STAGERS>();  // ws zeroed before any of its halves is written
          // columns past a split block's K range: loaded, the two warps taking alternate ones
          put_columns<T, BN>(ws, low, high, listed_below(low, high, k_end) + warp - 2, in_first, 2, lane,
                             [&](int c, int u) {
                               const int n = n0 + lane + 32 * u;
                               return n < N ? static_cast<unsigned>(static_cast<unsigned char>(
                                                  W[static_cast<long long>(n) * ldw + c]))
                                            : 0u;
                             });
        }
        // The ring: the first chunk's columns inside each stage picked from its weight box (rows
        // past N are zeros from the copy), then the stage handed back for both staging warps. The
        // two warps take alternate slots (each waits for every phase of its slots' barriers: a wait
        // for a phase two ahead of the barrier's would pass at once).
        for (int i = 0; i < count; ++i) {
          const int slot = i % STAGES, k0 = (first + i) * BK;
          if (slot % 2 != warp - 2) continue;
          barrier_wait(smem_address(&full[slot]), (i / STAGES) & 1);
          const unsigned char* tile = ring + slot * C::STAGE_BYTES + C::X_BYTES;
          put_columns<T, BN>(ws, low, high, listed_below(low, high, k0), listed_below(low, high, min(k0 + BK, k_end)),
                             1, lane, [&](int c, int u) {
                               c -= k0;
                               return static_cast<unsigned>(
                                   tile[(lane + 32 * u) * BK + ((((c >> 4) ^ lane) & 7) << 4) + (c & 15)]);
                             });
          __syncwarp();
          if (lane == 0) {
            barrier_arrive(smem_address(&empty[slot]));
            barrier_arrive(smem_address(&empty[slot]));
          }
        }
        __syncwarp();
        if (lane == 0) barrier_arrive(smem_address(&ring_free));  // no more reads of the ring
        if (outliers > 0) {
          fence_async_shared();         // the stores become visible to the consumers' wgmmas
          named_barrier<2, STAGERS>();  // every staging thread's stores are done
          if (t == 0) barrier_arrive(smem_address(&staged));
        }
      }
    } else {
      wait_for_prerequisites();  // before the epilogue's stores
    }
    // Chunks past the first: the whole warpgroup, into the ring's slots (chunk c into slot (c - 1)
    // % STAGES) once the consumers and the staging warps are done with the ring.
    wait_for_prerequisites();  // the gather kernel's Xc, list and count (every thread reads them)
    const bool dense = dense_part<C::DENSE>(outlier_count, hot_tiles);
    const int outliers = !dense && outlier_count != nullptr && blockIdx.z == 0 ? *outlier_count : 0;
    if (outliers > CHUNK) {
      barrier_wait(smem_address(&ring_free), 0);
      for (int c0 = CHUNK, c = 1; c0 < outliers; c0 += CHUNK, ++c) {
        const int slot = (c - 1) % STAGES, round = (c - 1) / STAGES;
        if (round > 0) barrier_wait(smem_address(&tail_empty[slot]), (round - 1) & 1);
        unsigned char* chunk = ring + slot * C::STAGE_BYTES;
        stage_xc<T, C::TOKENS, LOADERS>(c0, Xc, ldc, M, m0, chunk, threadIdx.x);
        stage_weight_chunk<T, BN, LOADERS>(c0, W, ldw, columns, outliers, N, n0, chunk + C::X_BYTES, threadIdx.x);
        fence_async_shared();  // the stores become visible to the consumers' wgmmas
        __syncwarp();
        if (lane == 0) barrier_arrive(smem_address(&tail_full[slot]));
      }
    }
  } else {
    wait_for_prerequisites();
    if (spent_mask != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
      for (int w = threadIdx.x - 128; w < spent_words; w += 128 * CONSUMERS) spent_mask[w] = 0u;
    const bool dense = dense_part<C::DENSE>(outlier_count, hot_tiles);
    const int outliers = !dense && outlier_count != nullptr && blockIdx.z == 0 ? *outlier_count : 0;
    const int tokens = 64 * (group - 1);  // the warpgroup's first token in the tile
    int acc[BN / 2];
#pragma unroll
    for (int j = 0; j < BN / 2; ++j) acc[j] = 0;
    float o[C::DENSE ? BN / 2 : 1];  // the dense part's sums
    if (!dense) {
      for (int i = 0; i < count; ++i) {
        consume_tokens_stage<BN, C::STAGE_BYTES, C::X_BYTES>(i, STAGES, acc, full, base, tokens);
        if (i > 0 && lane == 0) barrier_arrive(smem_address(&empty[(i - 1) % STAGES]));
      }
      // in each branch: moves of acc where the two branches meet, before this wait, made ptxas
      // serialize every wgmma of the kernel (C7515; 2-3 us at C = 0: benches/NOTES.md v44)
      wgmma_wait<0>();
      fence_operands(acc);
    } else if constexpr (C::DENSE) {
      // Stage i: its int8 wgmmas issued, then (stage i - 1's groups complete: its slot, its Xo
      // buffer and w16 free) where tile i is hot, its weight tile converted into w16 while they
      // run and Xo's tile times it issued onto o.
#pragma unroll
      for (int j = 0; j < BN / 2; ++j) o[j] = 0.0f;
      for (int i = 0, h = 0, held = -1; i < count; ++i) {
        const int slot = consume_tokens_stage<BN, C::STAGE_BYTES, C::X_BYTES>(i, C::DENSE_SLOTS, acc, full, base, tokens);
        fence_operands(o);
        if (held >= 0 && lane == 0) barrier_arrive(smem_address(&xo_empty[held]));
        if (i > 0 && lane == 0) barrier_arrive(smem_address(&empty[(i - 1) % C::DENSE_SLOTS]));
        held = -1;
        if (!tile_hot(hot_tiles, first + i)) continue;
        const int b = h % C::XO_BUFFERS;
        if constexpr (CONSUMERS > 1) named_barrier<1, 128 * CONSUMERS>();  // every consumer's w16 reads done
        convert_weight_tile<T, BN, 128 * CONSUMERS>(ring + slot * C::STAGE_BYTES + C::X_BYTES, w16, threadIdx.x - 128);
        fence_async_shared();  // the stores become visible to the wgmmas
        named_barrier<1, 128 * CONSUMERS>();  // w16 complete
        barrier_wait(smem_address(&xo_full[b]), (h / C::XO_BUFFERS) & 1);
        const unsigned xo = xo_base + b * C::XO_BYTES + tokens * 128;
        wgmma_fence();
#pragma unroll
        for (int s = 0; s < BK / 16; ++s)
          WgmmaTokensSS<BN, T>::run(o, descriptor(xo + (s / 4) * C::XO_HALF + 32 * (s % 4)),
                                    descriptor(w16_base + (s / 4) * C::W16_HALF + 32 * (s % 4)));
        wgmma_commit();
        held = b;
        ++h;
      }
      wgmma_wait<0>();
      fence_operands(acc);
      fence_operands(o);
    }
    if (lane == 0) barrier_arrive(smem_address(&ring_free));  // no more reads of the ring
    // acc[4j + 2h + e]: token 16 warp + g + 8h of the warpgroup's, weight row 8j + 2q + e; scaled
    // as int8_gemm.cu does (the int32 sum converted to fp32, times absmax / 127).
    const int warp = (threadIdx.x / 32) % 4, g = lane / 4;
    barrier_wait(smem_address(&scales_ready), 0);
    const float scale[2] = {row_scales[tokens + 16 * warp + g], row_scales[tokens + 16 * warp + g + 8]};
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) d[4 * j + r] = static_cast<float>(acc[4 * j + r]) * scale[r >> 1];
    if constexpr (C::DENSE) {
      if (dense) {
        fence_operands(o);
#pragma unroll
        for (int j = 0; j < BN / 2; ++j) d[j] += o[j];
      }
    }
    // Chunk 0 from the staging area, chunk c > 0 from ring slot (c - 1) % STAGES.
    for (int c0 = 0, c = 0; c0 < outliers; c0 += CHUNK, ++c) {
      const int slot = (c - 1) % STAGES;
      unsigned xa = smem_address(xs), wa = smem_address(ws);
      if (c == 0) {
        barrier_wait(smem_address(&staged), 0);
      } else {
        barrier_wait(smem_address(&tail_full[slot]), ((c - 1) / STAGES) & 1);
        xa = base + slot * C::STAGE_BYTES;
        wa = xa + C::X_BYTES;
      }
      xa += tokens * 128;
      fence_operands(d);
      wgmma_fence();
#pragma unroll
      for (int s = 0; s < CHUNK / 16; ++s) WgmmaTokensSS<BN, T>::run(d, descriptor(xa + 32 * s), descriptor(wa + 32 * s));
      wgmma_commit();
      wgmma_wait<0>();
      fence_operands(d);
      if (c > 0 && lane == 0) barrier_arrive(smem_address(&tail_empty[slot]));
    }
  }

  // The epilogue: the tile through shared memory (the ring is no longer read), partial[token][n].
  constexpr int EPI = C::EPILOGUE_THREADS;
  const ColumnScales<4> scales = load_column_scales<4>(n0 + partial_sums_column<BN, EPI>(), N, SCB, bias, bias_kind);
  __syncthreads();  // every stage consumed
  float* partial = reinterpret_cast<float*>(ring);
  if (group > 0) {
    const int warp = (threadIdx.x / 32) % 4, g = lane / 4, q = lane % 4;
    const int token = 64 * (group - 1) + 16 * warp + g;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        *reinterpret_cast<float2*>(partial + (token + 8 * h) * C::LDP + 8 * j + 2 * q) =
            make_float2(d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
  }
  if constexpr (SPLITS > 1) cluster_barrier();  // every block's partial tile is complete and visible
  else __syncthreads();
  if (threadIdx.x < EPI)
    write_partial_sums<T, SPLITS, C::TOKENS, BN, EPI>(partial, C::LDP, m0, n0, M, N, out, ldo, scales);
  if constexpr (SPLITS > 1) cluster_barrier();  // no block leaves while another reads its memory
#else
  __trap();  // compiled for sm_90a only (cuda_kernels.ARCH_SPECIFIC)
#endif
}

template <typename T, int BN, int CONSUMERS, int STAGES>
__global__ void __launch_bounds__(128 * (1 + CONSUMERS), 1)
    __maxnreg__((TokensTile<BN, CONSUMERS, STAGES>::MAX_REGISTERS)) int8_wgmma_tokens(INT8_WGMMA_PARAMS) {
  if (hands_over_to_weight_only(outlier_count, weight_only_above, spent_mask, spent_words)) return;
  int8_tokens_gemm<T, BN, CONSUMERS, STAGES, 1>(INT8_WGMMA_ARGS);
}
template <typename T, int BN, int CONSUMERS, int STAGES, int SPLITS>
__global__ void __launch_bounds__(128 * (1 + CONSUMERS), 1) CLUSTER_ALONG_Z(SPLITS)
    __maxnreg__((TokensTile<BN, CONSUMERS, STAGES>::MAX_REGISTERS)) int8_wgmma_tokens_split(INT8_WGMMA_PARAMS) {
  if (hands_over_to_weight_only(outlier_count, weight_only_above, spent_mask, spent_words)) return;
  int8_tokens_gemm<T, BN, CONSUMERS, STAGES, SPLITS>(INT8_WGMMA_ARGS);
}

#define INSTANTIATE(T, BN, CONSUMERS, STAGES)                                                       \
  template __global__ void int8_wgmma_tokens<T, BN, CONSUMERS, STAGES> SIGNATURE(T);                \
  template __global__ void int8_wgmma_tokens_split<T, BN, CONSUMERS, STAGES, 2> SIGNATURE(T);       \
  template __global__ void int8_wgmma_tokens_split<T, BN, CONSUMERS, STAGES, 4> SIGNATURE(T);
// 96, 128 and 224 weight rows by 64 or 128 tokens; as many stages as fit beside the staging area.
#define INSTANTIATE_TILES(T)                                                                      \
  INSTANTIATE(T, 96, 1, 10) INSTANTIATE(T, 96, 2, 7) INSTANTIATE(T, 128, 1, 8) INSTANTIATE(T, 128, 2, 6) \
  INSTANTIATE(T, 224, 1, 5) INSTANTIATE(T, 224, 2, 4)
INSTANTIATE_TILES(__half)
INSTANTIATE_TILES(__nv_bfloat16)
