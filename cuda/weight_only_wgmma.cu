// Weight-only int8 GEMM on Hopper's warpgroup tensor cores (sm_90a: wgmma; compiled for that
// target alone, see cuda_kernels.ARCH_SPECIFIC). Same math and operands as weight_only_gemm.cu,
// the mma.sync kernel that serves every other GPU:
//   out[m,n] = (sum_k X[m,k] * CB[n,k]) * (SCB[n] / 127) + bias[n]   (fp32 accumulation)
// for X [M, K] fp16 / bf16, CB [N, K] int8, SCB [N] f32; K a multiple of 16, X, CB and their row
// strides 16-byte aligned.
//
// The weight is wgmma's A operand, taken from registers: each consumer warpgroup converts the 64
// weight rows it owns to fp16 / bf16 (exact: |CB| <= 127) and multiplies them with all NTOK tokens
// of the block at once (m64 nNTOK k16), X being the B operand, read by the tensor cores straight
// from a 128-byte-swizzled shared tile. The accumulators are the transposed output tile: weight
// rows by tokens.
//
// Warp specialization: warpgroup 0 produces, warpgroups 1 and 2 consume (BN = 128 weight rows).
// One producer thread streams K tiles of BK = 128 columns into a ring of STAGES stages through the
// tensor memory accelerator (TMA: two boxes of X of 64 columns and one of the weight per stage,
// described by tensor maps the host encodes, tensor_maps.py), each stage completing on its `full`
// mbarrier as bytes arrive; a consumer waits on `full`, converts its weight fragment, issues eight
// wgmmas, and hands the stage back on its `empty` mbarrier once the wgmmas of the stage after it
// have been issued (one group of wgmmas in flight while the next fragment converts: two register
// sets, the loop unrolled by two so that both stay registers). Copies by the producer's threads
// (cp.async) measured slower, one bulk copy per weight row slower still (benches/NOTES.md v13).
//
// Split K (SPLITS > 1): the SPLITS blocks of an output tile form a thread-block cluster along grid
// z; each multiplies a contiguous range of K tiles, leaves its partial tile in its shared memory,
// and block r adds tokens [r, r + 1) * NTOK / SPLITS of all partials through distributed shared
// memory in rank order (deterministic), then writes them: one launch, no workspace.
//
// Stream-K (weight_only_wgmma_streamk, below): one block per SM, the tiles' K tiles divided evenly;
// over wide tiles (weight_only_wgmma_streamk_wide, HALVES = 2) each consumer warpgroup owns two
// blocks of 64 weight rows (256 per block, the weight's boxes 256 rows tall), so that each K tile
// of X is read from L2 once per 256 weight rows.
//
// Launch: grid = (ceil(M / NTOK), ceil(N / 128), SPLITS) (the blocks of one weight tile adjacent,
// so that the second and later token tiles find it in L2), block = 384 threads, dynamic shared
// memory WgmmaTile<NTOK, STAGES>::SMEM_BYTES. Parameters: the tensor maps of X (fp16 / bf16,
// box 64 x NTOK, 128-byte swizzle) and CB (int8, box 128 x 128, 128-byte swizzle), then
// SCB [N] f32, bias [N] or null in the dtype bias_kind names (common.cuh), M, N, K, out [M, ldo],
// gate_count [1] int32 or null, gate_above: with gate_count set the kernel is the "auto"
// arithmetic's weight-only half and computes the output only where *gate_count > gate_above
// (hopper.cuh's hand-over; the int8 kernel launched before it computes it otherwise).
#include "common.cuh"
#include "hopper.cuh"

using namespace llmint8;

namespace {
constexpr int BK = 128;                   // K columns per stage: two 128-byte rows of X
constexpr int CONSUMERS = 2;              // warpgroups that multiply
constexpr int THREADS = 128 * (1 + CONSUMERS);
constexpr int STEPS = BK / 16;            // wgmma k16 steps per stage

// HALVES: blocks of 64 weight rows per consumer warpgroup (2: "wide" tiles of 256 weight rows,
// each K tile of X read once per 256 weight rows instead of 128).
template <int NTOK, int STAGES, int HALVES = 1> struct WgmmaTile {
  static constexpr int BN = 64 * CONSUMERS * HALVES;  // weight rows per block
  static constexpr int W_BYTES = BN * BK;        // a stage's weight tile (rows of 128 bytes, swizzled)
  static constexpr int X_HALF = NTOK * 128;      // 64 columns of X: a multiple of 1024 (the swizzle's period)
  static constexpr int X_BYTES = 2 * X_HALF;
  static constexpr int STAGE_BYTES = (X_BYTES + W_BYTES + 1023) / 1024 * 1024;
  static constexpr int LDP = BN + 4;             // partial tile row, floats
  static constexpr int RING_BYTES = STAGES * STAGE_BYTES;
  static_assert(NTOK * LDP * 4 <= RING_BYTES, "the partial tile fits in the ring");
  static constexpr int SMEM_BYTES = RING_BYTES + 1024;  // + alignment of the ring to 1024 bytes
  static_assert(SMEM_BYTES <= 227 * 1024, "one block fits an SM");
  static_assert(NTOK % 16 == 0 && NTOK <= 256, "wgmma n");
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// ---- staging ----
// A stage is two boxes of X (64 columns each by NTOK token rows, fp16 / bf16, 128-byte swizzle:
// 16-byte piece c of row r at r * 128 + ((c ^ (r % 8)) * 16), the layout the wgmma descriptor
// names) and one of the weight (BK = 128 columns by BN rows, int8, 128-byte swizzle as well:
// hopper.cuh's load_weights reads its A fragments). Rows of 128 bytes: boxes of 64-byte weight
// rows streamed at about half the rate (benches/NOTES.md).

// Producer stage i: K columns [k0, k0 + BK) of X's token rows from m0 and of the weight's rows
// from n0 into slot i % STAGES of the ring at shared address `base`.
template <int NTOK, int STAGES, int HALVES = 1>
__device__ __forceinline__ void produce_stage(int i, unsigned long long* full, unsigned long long* empty,
                                              unsigned base, const TensorMap& x_map,
                                              const TensorMap& w_map, int k0, int m0, int n0) {
  using C = WgmmaTile<NTOK, STAGES, HALVES>;
  const unsigned bar = claim_stage<STAGES>(i, full, empty, C::X_BYTES + C::W_BYTES);
  const unsigned stage = base + (i % STAGES) * C::STAGE_BYTES;
  copy_box(stage, x_map, k0, m0, bar);
  copy_box(stage + C::X_HALF, x_map, k0 + 64, m0, bar);
  copy_box(stage + C::X_BYTES, w_map, k0, n0, bar);
}

// Consumer stage i (lane `lane` of a warp whose weight rows start at `row`): wait for the stage's
// copies, convert its weights into `a`, issue its wgmmas on `d`, then (this group in flight) wait
// for stage i - 1's group and hand that stage back to the producer.
template <typename T, int NTOK, int STAGES>
__device__ __forceinline__ void consume_stage(int i, int (&a)[STEPS][4], float (&d)[NTOK / 2],
                                              unsigned long long* full, unsigned long long* empty,
                                              const unsigned char* ring, unsigned base, int row,
                                              int lane) {
  using C = WgmmaTile<NTOK, STAGES>;
  const int slot = i % STAGES;
  barrier_wait(smem_address(&full[slot]), (i / STAGES) & 1);
  load_weights<T>(a, ring + slot * C::STAGE_BYTES + C::X_BYTES, row, lane / 4, lane % 4);
  fence_operands(d);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < STEPS; ++s)
    Wgmma<NTOK, T>::run(d, a[s], descriptor(base + slot * C::STAGE_BYTES + (s / 4) * C::X_HALF + 32 * (s % 4)));
  wgmma_commit();
  wgmma_wait<1>();
  fence_operands(d);
  if (i > 0 && lane == 0) barrier_arrive(smem_address(&empty[(i - 1) % STAGES]));
}

// consume_stage for wide tiles (HALVES = 2): the warpgroup's two blocks of 64 weight rows (`row`
// and row + 64) one after the other, each with its own register set and accumulators, so that one
// half's conversion overlaps the other's wgmmas; stage i - 1 goes back once the first half's
// group of stage i has been issued (the second half of stage i - 1 is then complete).
template <typename T, int NTOK, int STAGES>
__device__ __forceinline__ void consume_wide_stage(int i, int (&a)[2][STEPS][4], float (&d)[2][NTOK / 2],
                                                   unsigned long long* full, unsigned long long* empty,
                                                   const unsigned char* ring, unsigned base, int row,
                                                   int lane) {
  using C = WgmmaTile<NTOK, STAGES, 2>;
  const int slot = i % STAGES;
  barrier_wait(smem_address(&full[slot]), (i / STAGES) & 1);
  const unsigned x = base + slot * C::STAGE_BYTES;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    load_weights<T>(a[h], ring + slot * C::STAGE_BYTES + C::X_BYTES, row + 64 * h, lane / 4, lane % 4);
    fence_operands(d[h]);
    wgmma_fence();
#pragma unroll
    for (int s = 0; s < STEPS; ++s) Wgmma<NTOK, T>::run(d[h], a[h][s], descriptor(x + (s / 4) * C::X_HALF + 32 * (s % 4)));
    wgmma_commit();
    wgmma_wait<1>();
    fence_operands(d[1 - h]);
    if (h == 0 && i > 0 && lane == 0) barrier_arrive(smem_address(&empty[(i - 1) % STAGES]));
  }
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}  // namespace

template <typename T, int NTOK, int STAGES, int SPLITS>
__device__ __forceinline__ void wgmma_gemm(const TensorMap& x_map, const TensorMap& w_map,
                                           const float* __restrict__ SCB,
                                           const void* __restrict__ bias, int bias_kind, int M, int N,
                                           int K, T* __restrict__ out, int ldo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgmmaTile<NTOK, STAGES>;
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long full[STAGES], empty[STAGES];
  const unsigned raw = smem_address(smem_raw), base = (raw + 1023) & ~1023u;
  unsigned char* ring = smem_raw + (base - raw);
  const int m0 = blockIdx.x * NTOK, n0 = blockIdx.y * C::BN;
  const KRange range = split_k<BK, SPLITS>(K, blockIdx.z);
  const int first = range.first, count = range.count;
  const int group = threadIdx.x / 128;

  allow_dependents();
  if (threadIdx.x == 0) init_ring<STAGES>(full, empty, 4 * CONSUMERS);
  __syncthreads();

  float d[NTOK / 2];
  if (group == 0) {
    if (threadIdx.x == 0) {
      prefetch_map(x_map);
      prefetch_map(w_map);
      wait_for_prerequisites();
      for (int i = 0; i < count; ++i) {
        produce_stage<NTOK, STAGES>(i, full, empty, base, x_map, w_map, (first + i) * BK, m0, n0);
      }
    }
  } else {
    wait_for_prerequisites();  // before the tile's outputs are written
    const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const int row = 64 * (group - 1) + 16 * warp;
#pragma unroll
    for (int i = 0; i < NTOK / 2; ++i) d[i] = 0.0f;
    int a0[STEPS][4], a1[STEPS][4];
    int i = 0;
    for (; i + 1 < count; i += 2) {
      consume_stage<T, NTOK, STAGES>(i, a0, d, full, empty, ring, base, row, lane);
      consume_stage<T, NTOK, STAGES>(i + 1, a1, d, full, empty, ring, base, row, lane);
    }
    if (i < count) consume_stage<T, NTOK, STAGES>(i, a0, d, full, empty, ring, base, row, lane);
    wgmma_wait<0>();
    fence_operands(d);
  }
  write_tile<T, NTOK, C::BN, C::LDP, SPLITS, THREADS>(d, ring, m0, n0, M, N, out, ldo, SCB, bias, bias_kind);
#else
  __trap();  // compiled for sm_90a only (cuda_kernels.ARCH_SPECIFIC)
#endif
}

// Stream-K (one block per SM, a persistent grid): the output tiles' K tiles, tile by tile, form one
// sequence of units that the grid's blocks divide evenly (block b: units [b U / G, (b + 1) U / G)),
// so every SM streams the same share of the weight whatever the tile count (a grid of whole tiles
// leaves the last wave part-empty: 224 tiles of 8192x28672 take 2 waves of 132). The producer
// streams the block's units without a break at tile boundaries. A tile whose units lie in one block
// is written from the accumulators; one shared by S blocks (at most the first and the last tile of
// each block) has each block store its partial tile in `partials` (two slots per block: its first
// and its last tile), count itself in counters[tile], and the last to arrive adds the S partials in
// K order (deterministic), writes the tile and sets the counter back to zero for the next launch.
// The block holding the tile's first K tiles, which usually finishes last (they end its range),
// first reads the counter: when the S - 1 others are in, it adds their partials to its own in
// registers without storing it, fencing or counting itself (benches/NOTES.md v30).
// partials: 2 G slots of CONSUMERS * 128 threads * NTOK / 2 floats; counters: one int per tile,
// zero before the launch.
template <typename T, int NTOK, int STAGES, int HALVES>
__device__ __forceinline__ void wgmma_streamk(const TensorMap& x_map, const TensorMap& w_map,
                                              const float* __restrict__ SCB,
                                              const void* __restrict__ bias, int bias_kind, int M,
                                              int N, int K, T* __restrict__ out, int ldo,
                                              float* __restrict__ partials, int* __restrict__ counters) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgmmaTile<NTOK, STAGES, HALVES>;
  constexpr int CONSUMER_THREADS = 128 * CONSUMERS, ACC = HALVES * (NTOK / 2);
  constexpr int SLOT = CONSUMER_THREADS * ACC;
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long full[STAGES], empty[STAGES];
  __shared__ int last_arrival;
  const unsigned raw = smem_address(smem_raw), base = (raw + 1023) & ~1023u;
  unsigned char* ring = smem_raw + (base - raw);
  const int k_tiles = (K + BK - 1) / BK, m_tiles = (M + NTOK - 1) / NTOK;
  const long long units = static_cast<long long>(m_tiles) * ((N + C::BN - 1) / C::BN) * k_tiles;
  const long long blocks = gridDim.x, b = blockIdx.x;
  const long long begin = b * units / blocks, end = (b + 1) * units / blocks;
  const int group = threadIdx.x / 128;

  allow_dependents();
  if (threadIdx.x == 0) init_ring<STAGES>(full, empty, 4 * CONSUMERS);
  __syncthreads();

  if (group == 0) {
    // Registers move to the consumers: 128 x 40 + 256 x 232 fit the SM's 64 Ki.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (threadIdx.x == 0) {
      prefetch_map(x_map);
      prefetch_map(w_map);
      // The unit's tile and K tile stepped along (no division per unit on the issuing thread).
      int tile = static_cast<int>(begin / k_tiles), kt = static_cast<int>(begin % k_tiles);
      int m0 = (tile % m_tiles) * NTOK, n0 = (tile / m_tiles) * C::BN;
      wait_for_prerequisites();
      for (int i = 0; i < end - begin; ++i) {
        if (kt == k_tiles) {
          kt = 0;
          ++tile;
          m0 = (tile % m_tiles) * NTOK;
          n0 = (tile / m_tiles) * C::BN;
        }
        produce_stage<NTOK, STAGES, HALVES>(i, full, empty, base, x_map, w_map, kt++ * BK, m0, n0);
      }
    }
    return;  // the consumers' named barriers count their own 256 threads only
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  wait_for_prerequisites();  // before the counters, partials and outputs are touched
  const int ctid = threadIdx.x - 128;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
  const int row = 64 * HALVES * (group - 1) + 16 * warp;  // the warp's first weight row in the tile
  float d[HALVES][NTOK / 2];
  int a[2][STEPS][4];
  int i = 0;
  for (long long u = begin; u < end;) {
    const int tile = static_cast<int>(u / k_tiles);
    const long long tile_begin = static_cast<long long>(tile) * k_tiles, tile_end = tile_begin + k_tiles;
    const long long segment_end = min(end, tile_end);
    const bool first_of_block = u == begin;
#pragma unroll
    for (int h = 0; h < HALVES; ++h)
#pragma unroll
      for (int j = 0; j < NTOK / 2; ++j) d[h][j] = 0.0f;
    for (; u < segment_end; ++u, ++i) {  // the two register sets alternate across segments too
      if constexpr (HALVES == 2) consume_wide_stage<T, NTOK, STAGES>(i, a, d, full, empty, ring, base, row, lane);
      else if (i & 1) consume_stage<T, NTOK, STAGES>(i, a[1], d[0], full, empty, ring, base, row, lane);
      else consume_stage<T, NTOK, STAGES>(i, a[0], d[0], full, empty, ring, base, row, lane);
    }
    wgmma_wait<0>();
#pragma unroll
    for (int h = 0; h < HALVES; ++h) fence_operands(d[h]);
    // d[hh][4j + r]: weight row row + 64 hh + g (+ 8 for r = 2, 3), token 8j + 2q (+ 1 for odd r).
    // The rows' scales and biases are loaded before any wait of the epilogue, so that they arrive
    // during it (after the tile's reduction they were a round trip of their own).
    const int m0 = (tile % m_tiles) * NTOK, n0 = (tile / m_tiles) * C::BN;
    ColumnScales<1> scales[HALVES][2];
#pragma unroll
    for (int hh = 0; hh < HALVES; ++hh)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        scales[hh][h] = load_column_scales<1>(n0 + row + 64 * hh + g + 8 * h, N, SCB, bias, bias_kind);
    // The blocks sharing the tile: the first holds tile_begin, the last tile_end - 1.
    const long long first = ((tile_begin + 1) * blocks + units - 1) / units - 1;
    const long long last = (tile_end * blocks + units - 1) / units - 1;
    if (last > first) {
      // The last block to finish adds the partials. The block holding the tile's first K tiles
      // (usually the last to finish: they end its range) keeps its partial in registers; when
      // every other block has stored its own already, it is the last without storing or
      // counting itself.
      const bool holds_first = b == first;
      named_barrier<1, CONSUMER_THREADS>();  // every thread has read the last tile's last_arrival
      if (ctid == 0) last_arrival = holds_first && load_acquire(counters + tile) == last - first;
      named_barrier<1, CONSUMER_THREADS>();
      if (!last_arrival) {
        float* mine = partials + (2 * b + (first_of_block ? 0 : 1)) * SLOT + ctid;
#pragma unroll
        for (int h = 0; h < HALVES; ++h)
#pragma unroll
          for (int j = 0; j < NTOK / 2; ++j) __stcg(mine + (h * (NTOK / 2) + j) * CONSUMER_THREADS, d[h][j]);
        __threadfence();
        named_barrier<1, CONSUMER_THREADS>();
        if (ctid == 0) last_arrival = atomicAdd(counters + tile, 1) == last - first;
        named_barrier<1, CONSUMER_THREADS>();
        if (!last_arrival) continue;
      }
      __threadfence();
      // The partials added in K order, whichever block arrived last: deterministic (the first
      // block's from its registers when it is the one adding, the same values it stores). Block
      // c's partial of this tile is in its first slot when the tile begins inside or at the start
      // of c's range, else in its last.
      for (long long c = holds_first ? first + 1 : first; c <= last; ++c) {
        const long long c_begin = c * units / blocks;
        const float* part = partials + (2 * c + (c_begin >= tile_begin ? 0 : 1)) * SLOT + ctid;
#pragma unroll
        for (int h = 0; h < HALVES; ++h)
#pragma unroll
          for (int j = 0; j < NTOK / 2; ++j) {
            const float v = __ldcg(part + (h * (NTOK / 2) + j) * CONSUMER_THREADS);
            d[h][j] = c == first ? v : d[h][j] + v;
          }
      }
      if (ctid == 0) counters[tile] = 0;
    }
#pragma unroll
    for (int hh = 0; hh < HALVES; ++hh)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int n = n0 + row + 64 * hh + g + 8 * h;
        if (n >= N) continue;
#pragma unroll
        for (int j = 0; j < NTOK / 8; ++j)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int m = m0 + 8 * j + 2 * q + r;
            if (m < M)
              out[static_cast<long long>(m) * ldo + n] =
                  from_float<T>(d[hh][4 * j + 2 * h + r] * scales[hh][h].scale[0] + scales[hh][h].bias[0]);
          }
      }
  }
#else
  __trap();  // compiled for sm_90a only (cuda_kernels.ARCH_SPECIFIC)
#endif
}

#define WGMMA_PARAMS                                                                        \
  const __grid_constant__ TensorMap x_map, const __grid_constant__ TensorMap w_map,         \
      const float *__restrict__ SCB, const void *__restrict__ bias, int bias_kind, int M,   \
      int N, int K, T *__restrict__ out, int ldo, const int *__restrict__ gate_count, int gate_above
#define WGMMA_ARGS x_map, w_map, SCB, bias, bias_kind, M, N, K, out, ldo

template <typename T, int NTOK, int STAGES>
__global__ void __launch_bounds__(THREADS, 1) weight_only_wgmma(WGMMA_PARAMS) {
  if (left_to_int8(gate_count, gate_above)) return;
  wgmma_gemm<T, NTOK, STAGES, 1>(WGMMA_ARGS);
}
template <typename T, int NTOK, int STAGES, int SPLITS>
__global__ void __launch_bounds__(THREADS, 1) CLUSTER_ALONG_Z(SPLITS) weight_only_wgmma_split(WGMMA_PARAMS) {
  if (left_to_int8(gate_count, gate_above)) return;
  wgmma_gemm<T, NTOK, STAGES, SPLITS>(WGMMA_ARGS);
}

template <typename T, int NTOK, int STAGES>
__global__ void __launch_bounds__(THREADS, 1) weight_only_wgmma_streamk(WGMMA_PARAMS, float* __restrict__ partials,
                                                                      int* __restrict__ counters) {
  if (left_to_int8(gate_count, gate_above)) return;
  wgmma_streamk<T, NTOK, STAGES, 1>(WGMMA_ARGS, partials, counters);
}
// Stream-K over wide tiles (256 weight rows: the weight's tensor map has boxes of 256 rows).
template <typename T, int NTOK, int STAGES>
__global__ void __launch_bounds__(THREADS, 1) weight_only_wgmma_streamk_wide(WGMMA_PARAMS, float* __restrict__ partials,
                                                                           int* __restrict__ counters) {
  if (left_to_int8(gate_count, gate_above)) return;
  wgmma_streamk<T, NTOK, STAGES, 2>(WGMMA_ARGS, partials, counters);
}

#define SIGNATURE(T) (const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, const float*, const void*, int, int, int, int, T*, int, const int*, int)
#define INSTANTIATE(T, NTOK, STAGES)                                                \
  template __global__ void weight_only_wgmma<T, NTOK, STAGES> SIGNATURE(T);        \
  template __global__ void weight_only_wgmma_split<T, NTOK, STAGES, 2> SIGNATURE(T); \
  template __global__ void weight_only_wgmma_split<T, NTOK, STAGES, 4> SIGNATURE(T); \
  template __global__ void weight_only_wgmma_streamk<T, NTOK, STAGES>(                  \
      const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, const float*, \
      const void*, int, int, int, int, T*, int, const int*, int, float*, int*);
#define INSTANTIATE_WIDE(T, NTOK, STAGES)                                                  \
  template __global__ void weight_only_wgmma_streamk_wide<T, NTOK, STAGES>(                     \
      const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, const float*, \
      const void*, int, int, int, int, T*, int, const int*, int, float*, int*);
// Token tiles of 32, 64 and 128 by 128 weight rows; stages so that about 40 KB of weights are in
// flight per block. Wide tiles (stream-K only): 32 and 64 tokens by 256 weight rows.
#define INSTANTIATE_TILES(T) \
  INSTANTIATE(T, 32, 8) INSTANTIATE(T, 64, 6) INSTANTIATE(T, 128, 4) INSTANTIATE_WIDE(T, 32, 5) INSTANTIATE_WIDE(T, 64, 4)
INSTANTIATE_TILES(__half)
INSTANTIATE_TILES(__nv_bfloat16)
