// Weight-only int8 linear for 9-32 tokens on Hopper (sm_90a; compiled for that target alone, see
// cuda_kernels.ARCH_SPECIFIC): weight_only_linear.cu's register tile, its activations staged by the
// tensor memory accelerator instead of loaded by every lane. Same math, same products in the same
// order, so with SPLITS = 1 the same bits as weight_only_linear<T, ROW_TILES, TOKEN_TILES, 1, 1>:
//   out[m,n] = (sum_k X[m,k] * CB[n,k]) * (SCB[n] / 127) + bias[n]   (fp32 accumulation)
//
// Why: at 16 tokens the register tile's lanes load two bytes of X per weight byte, eight lines of
// 64 bytes per warp load (four lanes per token in the mma's B fragment), through the same L1 path
// as the weight stream, and the two do not overlap (benches/NOTES.md v32: 4096x11008 19.8 us with
// the activation loads, 15.2 without). Here one TMA copy per chunk and warp puts the 8 *
// TOKEN_TILES token rows of the chunk's 64 columns into shared memory (128-byte swizzle, so that
// the lanes' 16-byte reads below touch every bank once per quarter warp) and the lanes read them
// with ld.shared.
//
// Launch: grid = (ceil(M / TOKENS), ceil(N / (16 * ROW_TILES)), SPLITS), TOKENS = 8 * TOKEN_TILES,
// block = 256 threads (8 warps), dynamic shared memory weight_only_tma_shared_memory (cuda_kernels:
// a ring of STAGES chunks of X per warp, 8 * STAGES * TOKENS * 128 bytes aligned to the swizzle's
// 1024, reused after the K loop for the warps' sums). The block owns 16 * ROW_TILES weight rows,
// TOKENS tokens and the K split blockIdx.z of SPLITS (a thread-block cluster along z when SPLITS >
// 1: contiguous ranges of the 64-column chunks); warp w takes its split's chunks w, w + 8, ...,
// holding two chunks of the weight in registers (the next loads while this one is multiplied) and
// STAGES chunks of X in flight in its ring (its lane 0 issues the copies on the stage's mbarrier);
// the warps then add their sums in shared memory in warp order, the splits theirs across the
// cluster in rank order (write_partial_sums), and apply the scales and the bias. Parameters: the
// tensor map of X (fp16 / bf16, box 64 columns x TOKENS rows, 128-byte swizzle; rows past M and
// columns past K read as zero), CB [N, ldw] int8 (16-byte aligned rows, K a multiple of 16), SCB
// [N] f32, bias [N] or null in the dtype bias_kind names (common.cuh), M, N, K, out [M, ldo].
#include "common.cuh"
#include "hopper.cuh"
#include "weight_only.cuh"

using namespace llmint8;

namespace {
constexpr int THREADS = 256, WARPS = THREADS / 32, CHUNK = 64;
}  // namespace

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <typename T, int ROW_TILES, int TOKEN_TILES, int STAGES, int SPLITS>
__device__ __forceinline__ void tma_tile(const TensorMap& x_map, const signed char* __restrict__ CB, int ldw,
                                         const float* __restrict__ SCB, const void* __restrict__ bias,
                                         int bias_kind, int M, int N, int K, T* __restrict__ out, int ldo) {
  constexpr int ROWS = 16 * ROW_TILES, TOKENS = 8 * TOKEN_TILES, LDP = ROWS + 1;
  constexpr int X_STAGE = TOKENS * CHUNK * 2;  // TOKENS rows of 128 bytes
  __shared__ unsigned long long full[WARPS][STAGES];
  extern __shared__ unsigned char ring_raw[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int m0 = blockIdx.x * TOKENS, n0 = blockIdx.y * ROWS;
  unsigned char* ring = ring_raw + ((1024u - (smem_address(ring_raw) & 1023u)) & 1023u);
  unsigned char* mine = ring + warp * STAGES * X_STAGE;
  allow_dependents();
  if (lane == 0) {
    if (warp == 0) prefetch_map(x_map);
#pragma unroll
    for (int s = 0; s < STAGES; ++s) barrier_init(smem_address(&full[warp][s]), 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncwarp();
  wait_for_prerequisites();

  // The row pointers kept in registers where that spills nothing under the launch bounds: the
  // tiles of two stages and two or more row tiles (benches/NOTES.md v55).
  constexpr bool PIN = ROW_TILES > 1 && STAGES == 2;
  const WeightRows<ROW_TILES, true, PIN> rows(CB, ldw, n0, N, g, 16 * q);
  using Weights = WeightChunk<ROW_TILES, 1>;
  auto load_w = [&](Weights& wc, int chunk) {
    if (rows.whole && (chunk + 1) * CHUNK <= K) return stream_chunk(wc, rows, chunk * CHUNK);
    const int k = chunk * CHUNK + 16 * q;
#pragma unroll
    for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        wc.w[rt][h][0] = rows.inside(rt, h) && k < K ? stream_weights(rows.row(rt, h) + k) : make_int4(0, 0, 0, 0);
  };
  // This split's chunks [first, first + count); the warp's: first + warp + i * WARPS, i < mine.
  const KRange split = split_k<CHUNK, SPLITS>(K, blockIdx.z);
  const int first = split.first + warp;
  const int count = warp < split.count ? (split.count - warp + WARPS - 1) / WARPS : 0;
  // The warp's chunk i into its ring's stage i % STAGES.
  auto issue = [&](int i) {
    if (lane == 0) {
      const int stage = i % STAGES;
      const unsigned bar = smem_address(&full[warp][stage]);
      arrive_expecting(bar, X_STAGE);
      copy_box(smem_address(mine + stage * X_STAGE), x_map, (first + i * WARPS) * CHUNK, m0, bar);
    }
  };

  float acc[ROW_TILES][TOKEN_TILES][4];
#pragma unroll
  for (int rt = 0; rt < ROW_TILES; ++rt)
#pragma unroll
    for (int tt = 0; tt < TOKEN_TILES; ++tt)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[rt][tt][r] = 0.0f;
  // The products of one chunk, as weight_only_linear.cu's `multiply` with SPAN = 1: lane (g, q)
  // holds token tt * 8 + g's columns 16 q .. 16 q + 15 (16-byte pieces 2 q and 2 q + 1 of the
  // token's 128-byte row, at piece ^ g in the swizzled stage; piece 2 q + e feeds mma steps 2 e
  // and 2 e + 1) and weight rows g, g + 8's.
  auto multiply = [&](const Weights& wc, const unsigned char* stage) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      int4 x[TOKEN_TILES];
#pragma unroll
      for (int tt = 0; tt < TOKEN_TILES; ++tt)
        x[tt] = *reinterpret_cast<const int4*>(stage + (tt * 8 + g) * 128 + (((2 * q + e) ^ g) * 16));
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        int b[TOKEN_TILES][2];
#pragma unroll
        for (int tt = 0; tt < TOKEN_TILES; ++tt) {
          const int* words = reinterpret_cast<const int*>(&x[tt]);
          b[tt][0] = words[2 * half];
          b[tt][1] = words[2 * half + 1];
        }
        multiply_step<T>(acc, wc, b, 2 * e + half);
      }
    }
  };

#pragma unroll
  for (int i = 0; i < STAGES; ++i)
    if (i < count) issue(i);
  Weights w[2];
  if (count > 0) load_w(w[0], first);
  for (int pair = 0; pair < count; pair += 2) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int i = pair + j;
      if (i < count) {
        if (i + 1 < count) load_w(w[1 - j], first + (i + 1) * WARPS);
        const int stage = i % STAGES;
        barrier_wait(smem_address(&full[warp][stage]), (i / STAGES) & 1);
        multiply(w[j], mine + stage * X_STAGE);
        __syncwarp();  // every lane has read the stage before it is refilled
        if (i + STAGES < count) issue(i + STAGES);
      }
    }
  }

  // Every copy has landed (each was waited on); the ring holds the warps' sums from here.
  auto partial = reinterpret_cast<float(*)[TOKENS][LDP]>(ring);
  __syncthreads();
  store_partial_sums(partial[warp], acc, 0, g, q);
  __syncthreads();
  if constexpr (SPLITS == 1) {
    write_weight_only_outputs<T, WARPS, TOKENS, LDP, THREADS>(partial, m0, n0, M, N, SCB, bias, bias_kind, out, ldo);
  } else {
    // The block's sums (warp order) after the warps', then added across the cluster.
    float* sums = reinterpret_cast<float*>(partial + WARPS);
    const ColumnScales<4> scales =
        load_column_scales<4>(n0 + partial_sums_column<ROWS, THREADS>(), N, SCB, bias, bias_kind);
    for (int i = threadIdx.x; i < TOKENS * ROWS; i += THREADS) {
      const int token = i / ROWS, row = i % ROWS;
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) sum += partial[w][token][row];
      sums[i] = sum;
    }
    cluster_barrier();  // every block's sums are complete and visible to the cluster
    write_partial_sums<T, SPLITS, TOKENS, ROWS, THREADS>(sums, ROWS, m0, n0, M, N, out, ldo, scales);
    cluster_barrier();  // no block leaves while another still reads its shared memory
  }
}
#endif

#define TMA_PARAMS                                                                                 \
  const __grid_constant__ TensorMap x_map, const signed char *__restrict__ CB, int ldw,             \
      const float *__restrict__ SCB, const void *__restrict__ bias, int bias_kind, int M, int N,    \
      int K, T *__restrict__ out, int ldo
#define TMA_ARGS x_map, CB, ldw, SCB, bias, bias_kind, M, N, K, out, ldo

// The block's K range whole ...
template <typename T, int ROW_TILES, int TOKEN_TILES, int STAGES>
__global__ void __launch_bounds__(THREADS, register_tile_blocks<ROW_TILES, TOKEN_TILES / 2, 1>()) weight_only_tma(TMA_PARAMS) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  tma_tile<T, ROW_TILES, TOKEN_TILES, STAGES, 1>(TMA_ARGS);
#else
  __trap();  // sm_90a only (the launcher never runs it elsewhere)
#endif
}

// ... or split across a cluster of SPLITS blocks along z.
template <typename T, int ROW_TILES, int TOKEN_TILES, int STAGES, int SPLITS>
__global__ void __launch_bounds__(THREADS, register_tile_blocks<ROW_TILES, TOKEN_TILES / 2, 1>())
    CLUSTER_ALONG_Z(SPLITS) weight_only_tma_split(TMA_PARAMS) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  tma_tile<T, ROW_TILES, TOKEN_TILES, STAGES, SPLITS>(TMA_ARGS);
#else
  __trap();
#endif
}

#define SIGNATURE const __grid_constant__ TensorMap, const signed char*, int, const float*, const void*, int, int, int, int
#define INSTANTIATE(T, RT, TT, STAGES) \
  template __global__ void weight_only_tma<T, RT, TT, STAGES>(SIGNATURE, T*, int);
#define INSTANTIATE_SPLIT(T, RT, TT, STAGES, SPLITS) \
  template __global__ void weight_only_tma_split<T, RT, TT, STAGES, SPLITS>(SIGNATURE, T*, int);
// The tiles cuda_kernels.WEIGHT_ONLY_TMA_TILES lists (benches/NOTES.md v33, v34).
#define INSTANTIATE_TILES(T)                                                                      \
  INSTANTIATE(T, 1, 2, 2) INSTANTIATE(T, 1, 2, 4) INSTANTIATE(T, 2, 2, 2) INSTANTIATE(T, 2, 2, 3) \
  INSTANTIATE(T, 2, 2, 4) INSTANTIATE(T, 4, 2, 2) INSTANTIATE(T, 2, 4, 2)                         \
  INSTANTIATE_SPLIT(T, 2, 2, 2, 2) INSTANTIATE_SPLIT(T, 2, 4, 2, 2)
INSTANTIATE_TILES(__half)
INSTANTIATE_TILES(__nv_bfloat16)
