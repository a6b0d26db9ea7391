// Hopper (sm_90a) building blocks of the warp-specialized kernels (weight_only_wgmma.cu,
// int8_wgmma.cu): TMA tensor maps and bulk tensor copies, mbarriers, the ring of stages a
// producer thread fills and consumer warpgroups drain, and wgmma's descriptors and fences.
#pragma once
#include "common.cuh"

namespace llmint8 {

// A TMA tensor map (CUtensorMap, encoded on the host by cuTensorMapEncodeTiled), passed by value.
struct alignas(64) TensorMap {
  unsigned long long words[16];
};

// ---- the "auto" arithmetic's hand-over from LLM.int8() to the weight-only product ----
// Where a call's input holds many outlier columns, LLM.int8()'s outlier part costs more than
// multiplying every column in fp16 / bf16. "auto" then launches both products after the gather
// kernel, and the count that kernel wrote picks one on the GPU (no host sync): the int8 kernel
// (int8_wgmma.cu, int8_wgmma_tokens.cu) returns at once where the count exceeds its
// `weight_only_above`, zeroing the stream's mask it would have zeroed (block (0, 0, 0)), and the
// weight-only kernel launched after it (weight_only_wgmma.cu) returns at once where it does not.
// Both decide before anything else (every thread of a grid takes the same branch), so with
// `weight_only_above` >= 0 the int8 kernel streams no weight before its dependency wait; the
// gather kernel, told the same limit, then leaves the outlier columns where they are.

// Both let their dependents launch first: the weight-only kernel's blocks (or the next kernel's)
// then wait beside them, or take an SM as soon as one is free, rather than after the whole grid
// (with the gather kernel's limit, 0.7 us per forward at C = 0 and 5 us above the limit on
// 4096x11008 at 128 rows, benches/NOTES.md v51).

// Whether an int8 kernel hands this call over (weight_only_above < 0 or no count: never).
__device__ __forceinline__ bool hands_over_to_weight_only(const int* outlier_count, int weight_only_above,
                                                          unsigned int* spent_mask, int spent_words) {
  allow_dependents();
  if (weight_only_above < 0 || outlier_count == nullptr) return false;
  wait_for_prerequisites();  // the gather kernel's count
  if (*outlier_count <= weight_only_above) return false;
  if (spent_mask != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
    for (int w = threadIdx.x; w < spent_words; w += blockDim.x) spent_mask[w] = 0u;
  return true;
}

// Whether a weight-only kernel gated by `gate_count` leaves this call to the int8 kernel before it
// (null: not gated, it always runs).
__device__ __forceinline__ bool left_to_int8(const int* gate_count, int gate_above) {
  allow_dependents();
  if (gate_count == nullptr) return false;
  wait_for_prerequisites();  // the int8 kernel, complete after the gather kernel's count
  return *gate_count <= gate_above;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// ---- mbarriers ----
__device__ __forceinline__ void barrier_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void barrier_arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void barrier_wait(unsigned bar, unsigned parity) {
  unsigned done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.acquire.cta.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// Arrives on `bar` and makes its current phase also wait for `bytes` of copies.
__device__ __forceinline__ void arrive_expecting(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
// The box of `map` at (column, row) into shared memory at `dst` by the tensor memory accelerator,
// completing as transactions on `bar` (elements outside the tensor are filled with zeros).
__device__ __forceinline__ void copy_box(unsigned dst, const TensorMap& map, int column, int row, unsigned bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
      ::"r"(dst), "l"(reinterpret_cast<unsigned long long>(&map)), "r"(column), "r"(row), "r"(bar)
      : "memory");
}
// The same box into shared memory at `dst` of every block of the cluster in `blocks` (a bit per
// rank), completing on the barrier at `bar` of each (the same shared offsets in every block).
__device__ __forceinline__ void copy_box_to_blocks(unsigned dst, const TensorMap& map, int column, int row,
                                                   unsigned bar, unsigned short blocks) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;\n"
      ::"r"(dst), "l"(reinterpret_cast<unsigned long long>(&map)), "r"(column), "r"(row), "r"(bar), "h"(blocks)
      : "memory");
}
// This block's rank in its cluster, and an arrival on the barrier at shared offset `bar` of the
// cluster's block `rank`, with the default (CTA-scope) release: a consumer's hand-back orders
// nothing but its own completed reads, and a cluster-scope release costs a GPU-wide fence on every
// stage (ncu: 40% of the 256-token tile's stalls, benches/NOTES.md v58).
__device__ __forceinline__ unsigned cluster_rank() {
  unsigned rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return rank;
}
__device__ __forceinline__ void barrier_arrive_at_block(unsigned bar, unsigned rank) {
  unsigned remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(bar), "r"(rank));
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}
__device__ __forceinline__ void prefetch_map(const TensorMap& map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&map)) : "memory");
}

// ---- the ring of stages ----
// Every stage has a `full` barrier (the producer's arrival plus the bytes of its copies) and an
// `empty` one (`consumers` arrivals: one lane of each consumer warp). Called by thread 0, followed
// by a barrier of the block.
template <int STAGES>
__device__ __forceinline__ void init_ring(unsigned long long* full, unsigned long long* empty, int consumers) {
  for (int s = 0; s < STAGES; ++s) {
    barrier_init(smem_address(&full[s]), 1);
    barrier_init(smem_address(&empty[s]), consumers);
  }
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// The producer's step i on a ring of `slots` slots: waits until the consumers have handed slot
// i % slots back (from the second round on) and makes the slot's `full` barrier expect `bytes`;
// returns that barrier (the caller then issues the slot's copies on it).
__device__ __forceinline__ unsigned claim_slot(int i, int slots, unsigned long long* full, unsigned long long* empty,
                                               unsigned bytes) {
  const int slot = i % slots;
  if (i >= slots) barrier_wait(smem_address(&empty[slot]), (i / slots - 1) & 1);
  const unsigned bar = smem_address(&full[slot]);
  arrive_expecting(bar, bytes);
  return bar;
}
// The same on a ring of STAGES slots.
template <int STAGES>
__device__ __forceinline__ unsigned claim_stage(int i, unsigned long long* full, unsigned long long* empty,
                                                unsigned bytes) {
  return claim_slot(i, STAGES, full, empty, bytes);
}

// ---- wgmma ----
// Shared-memory descriptor of a K-major tile with 128-byte swizzle: rows of 128 bytes, groups of 8
// rows 1024 bytes apart.
__device__ __forceinline__ unsigned long long descriptor(unsigned address) {
  return static_cast<unsigned long long>((address & 0x3FFFF) >> 4) | (1ull << 16) |
         (static_cast<unsigned long long>(1024 >> 4) << 32) | (1ull << 62);
}
// Keeps the compiler from moving accesses of the accumulators across the wgmma pipeline.
template <int N> __device__ __forceinline__ void fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N> __device__ __forceinline__ void fence_operands(int (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Shared memory written by threads becomes visible to wgmma (the async proxy) after this.
__device__ __forceinline__ void fence_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// A load of *p ordered before the thread's later loads at GPU scope (pairs with a release or with
// __threadfence() and a store or atomic by the writer).
__device__ __forceinline__ int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
// A barrier of the `threads` threads (whole warps) that use barrier `id` (1-15: 0 is __syncthreads).
template <int ID, int THREADS> __device__ __forceinline__ void named_barrier() {
  asm volatile("bar.sync %0, %1;\n" ::"n"(ID), "n"(THREADS) : "memory");
}
#define WGMMA_D8(i) "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
                    "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define WGMMA_ARGS_A "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)

// d (64 weight rows x N tokens, fp32) += a (64 x 16, registers) * B (16 x N, shared memory).
template <int N, typename T> struct Wgmma;
#define WGMMA_F16_BF16(T, TYPE)                                                                      \
  template <> struct Wgmma<32, T> {                                                                  \
    static __device__ __forceinline__ void run(float (&d)[16], const int (&a)[4], unsigned long long desc) { \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n" \
                   "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE                       \
                   " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15},"                       \
                   " {%16,%17,%18,%19}, %20, p, 1, 1, 0;\n}\n"                                           \
                   : WGMMA_D8(0), WGMMA_D8(8)                                                        \
                   : WGMMA_ARGS_A);                                                                  \
    }                                                                                                \
  };                                                                                                 \
  template <> struct Wgmma<64, T> {                                                                  \
    static __device__ __forceinline__ void run(float (&d)[32], const int (&a)[4], unsigned long long desc) { \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
                   "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                       \
                   " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                         \
                   "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31},"               \
                   " {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"                                           \
                   : WGMMA_D8(0), WGMMA_D8(8), WGMMA_D8(16), WGMMA_D8(24)                            \
                   : WGMMA_ARGS_A);                                                                  \
    }                                                                                                \
  };                                                                                                 \
  template <> struct Wgmma<128, T> {                                                                 \
    static __device__ __forceinline__ void run(float (&d)[64], const int (&a)[4], unsigned long long desc) { \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
                   "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE                      \
                   " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                         \
                   "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                 \
                   "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                 \
                   "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63},"               \
                   " {%64,%65,%66,%67}, %68, p, 1, 1, 0;\n}\n"                                           \
                   : WGMMA_D8(0), WGMMA_D8(8), WGMMA_D8(16), WGMMA_D8(24),                           \
                     WGMMA_D8(32), WGMMA_D8(40), WGMMA_D8(48), WGMMA_D8(56)                          \
                   : WGMMA_ARGS_A);                                                                  \
    }                                                                                                \
  };                                                                                                 \
  template <> struct Wgmma<256, T> {                                                                 \
    static __device__ __forceinline__ void run(float (&d)[128], const int (&a)[4], unsigned long long desc) { \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"                                       \
                   "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE                      \
                   " {"                                                                              \
                   "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15," \
                   "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31," \
                   "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47," \
                   "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63," \
                   "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79," \
                   "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95," \
                   "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111," \
                   "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}," \
                   " {%128,%129,%130,%131}, %132, p, 1, 1, 0;\n}\n"                                       \
                   : WGMMA_D8(0), WGMMA_D8(8), WGMMA_D8(16), WGMMA_D8(24),                           \
                     WGMMA_D8(32), WGMMA_D8(40), WGMMA_D8(48), WGMMA_D8(56),                         \
                     WGMMA_D8(64), WGMMA_D8(72), WGMMA_D8(80), WGMMA_D8(88),                         \
                     WGMMA_D8(96), WGMMA_D8(104), WGMMA_D8(112), WGMMA_D8(120)                       \
                   : WGMMA_ARGS_A);                                                                  \
    }                                                                                                \
  };
WGMMA_F16_BF16(__half, "f16")
WGMMA_F16_BF16(__nv_bfloat16, "bf16")
#undef WGMMA_F16_BF16

// ---- the weight as the register operand ----
// Byte offset of 16-byte piece `piece` of row `row` in a tile of 128-byte rows with the 128-byte
// swizzle (TMA's layout; the 8 rows a warp's lanes read at once lie on distinct banks).
__device__ __forceinline__ int weight_piece(int row, int piece) { return row * 128 + ((piece ^ (row & 7)) << 4); }

// The A fragments (fp16 / bf16, exact) of a weight tile of 128-byte int8 rows (`ws`, swizzled as
// weight_piece says) for the lane (g, q) of a consumer warp whose rows start at `row`: a[s] = rows
// row + g, row + g + 8, columns 16 s + (2q, 2q + 1) and 16 s + (2q + 8, 2q + 9).
template <typename T, int STEPS>
__device__ __forceinline__ void load_weights(int (&a)[STEPS][4], const unsigned char* ws, int row, int g, int q) {
  static_assert(STEPS <= 8, "a row holds 8 k16 steps");
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = row + g + 8 * h;
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
      const unsigned char* piece = ws + weight_piece(r, s) + 2 * q;
      const unsigned word = *reinterpret_cast<const unsigned short*>(piece) |
                            (static_cast<unsigned>(*reinterpret_cast<const unsigned short*>(piece + 8)) << 16);
      to_pairs(word, a[s][h], a[s][2 + h], T{});
    }
  }
}

// ---- the dense outlier part (int8_wgmma.cu, int8_wgmma_tokens.cu) ----
// Whether K tile t holds an outlier column (the gather kernel's bits; the same for every thread).
__device__ __forceinline__ bool tile_hot(const unsigned int* __restrict__ hot_tiles, int t) {
  return (hot_tiles[t >> 5] >> (t & 31)) & 1u;
}

// The dense outlier part's copies (a thread of its own): Xo's tile for each hot K tile t of
// [first, first + count), two boxes of 64 columns by the block's tokens from row m0 (`half`
// bytes each), into BUFFERS buffers of 2 * half bytes from shared address `xo_base`, up to BUFFERS
// ahead of the consumers (`xo_full`: the copies' bytes; `xo_empty`: the consumers' arrivals once
// their wgmmas have read a buffer).
template <int BUFFERS>
__device__ __forceinline__ void copy_hot_tiles(const TensorMap& xo_map, const unsigned int* __restrict__ hot_tiles,
                                               int first, int count, int m0, unsigned xo_base, unsigned half,
                                               unsigned long long* xo_full, unsigned long long* xo_empty) {
  for (int i = 0, h = 0; i < count; ++i) {
    const int t = first + i, b = h % BUFFERS;
    if (!tile_hot(hot_tiles, t)) continue;
    if (h >= BUFFERS) barrier_wait(smem_address(&xo_empty[b]), (h / BUFFERS - 1) & 1);
    const unsigned bar = smem_address(&xo_full[b]), dst = xo_base + b * 2 * half;
    arrive_expecting(bar, 2 * half);
    copy_box(dst, xo_map, t * 128, m0, bar);
    copy_box(dst + half, xo_map, t * 128 + 64, m0, bar);
    ++h;
  }
}

// ---- the end of a block ----
// The K range of split `split` of SPLITS: K tiles [first, first + count) of ceil(K / BK).
struct KRange {
  int first, count;
};
template <int BK, int SPLITS> __device__ __forceinline__ KRange split_k(int K, int split) {
  const int k_tiles = (K + BK - 1) / BK, per_split = (k_tiles + SPLITS - 1) / SPLITS;
  const int first = split * per_split;
  return {first, max(0, min(k_tiles, first + per_split) - first)};
}

// A consumer's m64nNTOK accumulators d (fp32; warpgroup `group` >= 1 of 64 weight rows each) into
// the block's partial tile in shared memory (`ring`, no longer read: partial[token][row], rows LDP
// floats apart).
template <int NTOK, int LDP>
__device__ __forceinline__ void store_partial_tile(const float (&d)[NTOK / 2], unsigned char* ring, int group) {
  float* partial = reinterpret_cast<float*>(ring);
  // d[4j + r]: weight row (row + 8 for r = 2, 3), token 8j + 2q (+ 1 for odd r).
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
  const int row = 64 * (group - 1) + 16 * warp + g;
#pragma unroll
  for (int j = 0; j < NTOK / 8; ++j)
#pragma unroll
    for (int r = 0; r < 4; ++r) partial[(8 * j + 2 * q + (r & 1)) * LDP + row + 8 * (r >> 1)] = d[4 * j + r];
}

// After the K loop, by all THREADS threads of a block (warpgroup 0 the producer, warpgroups 1..
// the consumers of 64 weight rows each, d their m64nNTOK accumulators, fp32): the block's tile
// through shared memory (store_partial_tile), its K split's partials added across the cluster
// along z (SPLITS > 1, rank order) and written, scaled and biased (write_partial_sums).
template <typename T, int NTOK, int BN, int LDP, int SPLITS, int THREADS>
__device__ __forceinline__ void write_tile(const float (&d)[NTOK / 2], unsigned char* ring, int m0, int n0,
                                           int M, int N, T* out, int ldo, const float* SCB, const void* bias,
                                           int bias_kind) {
  const ColumnScales<4> scales =
      load_column_scales<4>(n0 + partial_sums_column<BN, THREADS>(), N, SCB, bias, bias_kind);
  __syncthreads();  // every stage has been consumed: the ring holds the partial tile now
  const int group = threadIdx.x / 128;
  if (group > 0) store_partial_tile<NTOK, LDP>(d, ring, group);
  if constexpr (SPLITS > 1) cluster_barrier();  // every block's partial tile is complete and visible
  else __syncthreads();
  write_partial_sums<T, SPLITS, NTOK, BN, THREADS>(reinterpret_cast<const float*>(ring), LDP, m0, n0, M, N, out, ldo,
                                                   scales);
  if constexpr (SPLITS > 1) cluster_barrier();  // no block leaves while another reads its memory
}

// The tile of a block whose consumers (COUNT threads, `thread` this one's index among them, K
// unsplit) write it alone: their accumulators d through shared memory (`ring`, no longer read by
// any of them once the first barrier returns), scaled and biased as write_partial_sums does.
template <typename T, int NTOK, int BN, int LDP, int COUNT>
__device__ __forceinline__ void write_tile_by_consumers(const float (&d)[NTOK / 2], unsigned char* ring, int group,
                                                        int thread, int m0, int n0, int M, int N, T* out, int ldo,
                                                        const float* SCB, const void* bias, int bias_kind) {
  constexpr int QUADS = BN / 4;
  static_assert(COUNT % QUADS == 0, "a thread writes the same columns in every row");
  const int col = (thread % QUADS) * 4;
  const ColumnScales<4> scales = load_column_scales<4>(n0 + col, N, SCB, bias, bias_kind);
  named_barrier<1, COUNT>();  // every stage and chunk has been read
  store_partial_tile<NTOK, LDP>(d, ring, group);
  named_barrier<1, COUNT>();  // the partial tile is complete
  const float* partial = reinterpret_cast<const float*>(ring);
  const bool pairs = ((reinterpret_cast<unsigned long long>(out) | (unsigned)ldo * sizeof(T)) & 3) == 0;
  const bool quads = ((reinterpret_cast<unsigned long long>(out) | (unsigned)ldo * sizeof(T)) & 7) == 0;
#pragma unroll 2
  for (int i = thread; i < NTOK * QUADS; i += COUNT) {
    const int row = i / QUADS;
    if (m0 + row >= M) break;  // rows ascend with i
    const float4 sum = *reinterpret_cast<const float4*>(partial + row * LDP + col);
    const float sums[4] = {sum.x, sum.y, sum.z, sum.w};
    write_scaled_quad<T>(out, ldo, m0 + row, n0 + col, N, sums, scales, pairs, quads);
  }
}

// Registers a warpgroup owns from here on (setmaxnreg: all its warps, the same count).
template <int REGISTERS> __device__ __forceinline__ void release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGISTERS));
}
template <int REGISTERS> __device__ __forceinline__ void claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGISTERS));
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}  // namespace llmint8
