// Weight-only int8 GEMM for many tokens (sm_80+; K a multiple of 16, X, CB and their row
// strides 16-byte aligned): the fp16 / bf16 activations times the int8 weight converted to the
// same type in registers (exact: |CB| <= 127), on tensor cores, with every token of a block
// multiplied by each weight tile it stages, so the weight streams from memory once per BM tokens
// (weight_only_linear.cu, the kernel for up to 16 tokens, reads it once per 16).
//
// Math, as weight_only_linear.cu, for X [M, K] (T), CB [N, K] int8 and SCB [N] f32:
//   out[m,n] = (sum_k X[m,k] * CB[n,k]) * (SCB[n] / 127) + bias[n]   (fp32 accumulation)
//
// Tiles: a block owns BM = 16 * MT * WM tokens and BN = 8 * NT * WN weight rows; warp (wm, wn) of
// its WM x WN warps owns 16 * MT of the tokens and 8 * NT of the rows. mma.sync m16n8k16 with X
// as A (16 tokens) and the weight as B (8 rows, its columns the outputs' columns, so that each
// thread stores pairs of adjacent outputs). K runs in tiles of BK = 128 columns through a
// STAGES-deep cp.async pipeline in shared memory. In each 32-column part of a tile lane 4g + q
// reads columns 8q .. 8q + 7 of its token rows (one 16-byte load per row) and of its weight row
// (one 8-byte load), and mma step s (0, 1) takes columns 8q + 4s .. 8q + 4s + 3 as its k pairs
// (2q, 2q + 1) and (2q + 8, 2q + 9): A and B share this permutation of K, so each product still
// sums every column once. Staged rows are padded (token rows to 320 bytes, weight rows to 160)
// so that those loads hit distinct banks. (H200, benches/NOTES.md v12: BK = 128 with 2 stages
// measured faster than BK = 64 with 3 or 4 and than BK = 128 with 3: more blocks per SM.)
//
// Split K (SPLITS > 1, sm_90 only): the SPLITS blocks of an output tile are one thread-block
// cluster along grid z; each multiplies a contiguous range of K tiles, leaves its partial tile in
// its shared memory, and block r adds rows [r, r + 1) * BM / SPLITS of all partials through
// distributed shared memory in rank order (deterministic), then writes them: no workspace, no
// counters, no memset, one launch.
//
// Launch: grid = (ceil(N / BN), ceil(M / BM), SPLITS), block = 256 threads, dynamic shared memory
// STAGES * (BM * 320 + BN * 160) bytes. Pointers: X [M, ldx] T, CB [N, ldw] int8, SCB [N] f32,
// bias [N] or null in the dtype bias_kind names (common.cuh), out [M, ldo] T.
#include "common.cuh"

using namespace llmint8;

namespace {
constexpr int THREADS = 256, WARPS = THREADS / 32, BK = 128, STAGES = 2;
constexpr int XLD = BK + 32;  // staged token row, elements: 320 bytes (64 mod 128)
constexpr int WLD = BK + 32;  // staged weight row, bytes: 160 (rows g = 0..3 on distinct banks)

template <int MT, int NT, int WM, int WN> struct GemmTile {
  static_assert(WM * WN == WARPS, "WM x WN warps");
  static constexpr int BM = 16 * MT * WM, BN = 8 * NT * WN;
  static constexpr int X_BYTES = BM * XLD * 2, STAGE_BYTES = X_BYTES + BN * WLD;
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;
  static constexpr int LDR = BN + 8;  // partial tile row, floats: rows g = 0..3 on distinct banks
  static_assert(BM * LDR * 4 <= SMEM_BYTES, "the partial tile fits in the pipeline's memory");
  static_assert(BM * BK / 8 % THREADS == 0 && BN * BK / 16 % THREADS == 0, "whole loads per thread");
};

// K tile [k0, k0 + BK) of the block's token rows [m0, m0 + BM) and weight rows [n0, n0 + BN) into
// a stage; what lies outside X or CB is zero-filled.
template <typename T, int BM, int BN>
__device__ __forceinline__ void load_stage(unsigned char* stage, const T* X, int ldx,
                                           const signed char* CB, int ldw, int m0, int n0, int M,
                                           int N, int K, int k0) {
  T* xs = reinterpret_cast<T*>(stage);
  signed char* ws = reinterpret_cast<signed char*>(stage + BM * XLD * 2);
  constexpr int X_PIECES = BK / 8, W_PIECES = BK / 16;  // 16-byte pieces per row
#pragma unroll
  for (int j = 0; j < BM * X_PIECES / THREADS; ++j) {
    const int i = threadIdx.x + j * THREADS, row = i / X_PIECES, k = k0 + (i % X_PIECES) * 8, m = m0 + row;
    const bool inside = m < M && k < K;
    cp_async16(xs + row * XLD + (i % X_PIECES) * 8, inside ? X + (long long)m * ldx + k : X,
               inside ? 16 : 0);
  }
#pragma unroll
  for (int j = 0; j < BN * W_PIECES / THREADS; ++j) {
    const int i = threadIdx.x + j * THREADS, row = i / W_PIECES, k = k0 + (i % W_PIECES) * 16, n = n0 + row;
    const bool inside = n < N && k < K;
    cp_async16_stream(ws + row * WLD + (i % W_PIECES) * 16, inside ? CB + (long long)n * ldw + k : CB,
                      inside ? 16 : 0);
  }
}

// One lane's operands of a 32-column part of a stage: token rows g and g + 8 of each 16-token
// tile and weight row g of each 8-row tile, columns 8q .. 8q + 7.
template <int MT, int NT> struct Fragments {
  int4 x[MT][2];
  uint2 w[NT];
};

template <typename T, int MT, int NT>
__device__ __forceinline__ void load_fragments(Fragments<MT, NT>& f, const T* xs,
                                               const signed char* ws, int wm0, int wn0, int k) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      f.x[mt][h] = *reinterpret_cast<const int4*>(xs + (wm0 + mt * 16 + h * 8 + (threadIdx.x & 31) / 4) * XLD + k);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
    f.w[nt] = *reinterpret_cast<const uint2*>(ws + (wn0 + nt * 8 + (threadIdx.x & 31) / 4) * WLD + k);
}

// acc += the stage's token rows [wm0, wm0 + 16 MT) times its weight rows [wn0, wn0 + 8 NT), the
// next part's fragments loading while this part's are multiplied.
template <typename T, int MT, int NT>
__device__ __forceinline__ void multiply_stage(float (&acc)[MT][NT][4], const T* xs,
                                               const signed char* ws, int wm0, int wn0, int q) {
  Fragments<MT, NT> ring[2];
  load_fragments<T, MT, NT>(ring[0], xs, ws, wm0, wn0, 8 * q);
#pragma unroll
  for (int part = 0; part < BK / 32; ++part) {
    const Fragments<MT, NT>& f = ring[part & 1];
    if (part + 1 < BK / 32)
      load_fragments<T, MT, NT>(ring[(part + 1) & 1], xs, ws, wm0, wn0, (part + 1) * 32 + 8 * q);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      int b[NT][2];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) to_pairs(s ? f.w[nt].y : f.w[nt].x, b[nt][0], b[nt][1], T{});
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int* lo = reinterpret_cast<const int*>(&f.x[mt][0]);
        const int* hi = reinterpret_cast<const int*>(&f.x[mt][1]);
        const int a[4] = {lo[2 * s], hi[2 * s], lo[2 * s + 1], hi[2 * s + 1]};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma_f16(acc[mt][nt], a, b[nt], T{});
      }
    }
  }
}

}  // namespace

template <typename T, int MT, int NT, int WM, int WN, int SPLITS>
__device__ __forceinline__ void gemm(const T* __restrict__ X, int ldx,
                                     const signed char* __restrict__ CB, int ldw,
                                     const float* __restrict__ SCB, const void* __restrict__ bias,
                                     int bias_kind, int M, int N, int K, T* __restrict__ out,
                                     int ldo) {
  using C = GemmTile<MT, NT, WM, WN>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int wm0 = (warp / WN) * 16 * MT, wn0 = (warp % WN) * 8 * NT;
  const int n0 = blockIdx.x * C::BN, m0 = blockIdx.y * C::BM;
  const int k_tiles = (K + BK - 1) / BK, per_split = (k_tiles + SPLITS - 1) / SPLITS;
  const int first = blockIdx.z * per_split, count = max(0, min(k_tiles, first + per_split) - first);

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.0f;

  auto stage = [&](int i) { return smem + (i % STAGES) * C::STAGE_BYTES; };
#pragma unroll
  for (int i = 0; i < STAGES - 1; ++i) {
    if (i < count)
      load_stage<T, C::BM, C::BN>(stage(i), X, ldx, CB, ldw, m0, n0, M, N, K, (first + i) * BK);
    cp_async_commit();
  }
  for (int i = 0; i < count; ++i) {
    cp_async_wait<STAGES - 2>();  // tile i has landed (each thread's own copies)
    __syncthreads();              // ... everyone's, and tile i - 1's stage is free again
    if (i + STAGES - 1 < count)
      load_stage<T, C::BM, C::BN>(stage(i + STAGES - 1), X, ldx, CB, ldw, m0, n0, M, N, K,
                                  (first + i + STAGES - 1) * BK);
    cp_async_commit();
    const unsigned char* s = stage(i);
    multiply_stage<T, MT, NT>(acc, reinterpret_cast<const T*>(s),
                              reinterpret_cast<const signed char*>(s + C::X_BYTES), wm0, wn0, q);
  }

  const bool pairs = ((reinterpret_cast<unsigned long long>(out) | (unsigned)ldo * sizeof(T)) & 3) == 0;
  if constexpr (SPLITS == 1) {
    // c0, c1: token g, weight rows 2q, 2q + 1 of the 16 x 8 tile; c2, c3: token g + 8.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = m0 + wm0 + mt * 16 + h * 8 + g;
        if (m >= M) continue;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          write_outputs<T, 2>(out, ldo, m, n0 + wn0 + nt * 8 + 2 * q, N, &acc[mt][nt][2 * h], SCB,
                              bias, bias_kind, pairs);
      }
  } else {
#if __CUDA_ARCH__ >= 900
    cp_async_wait<0>();
    __syncthreads();  // the pipeline's memory is free for the partial tile
    float* partial = reinterpret_cast<float*>(smem);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          *reinterpret_cast<float2*>(partial + (wm0 + mt * 16 + h * 8 + g) * C::LDR + wn0 + nt * 8 + 2 * q) =
              make_float2(acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
    const ColumnScales<4> scales =
        load_column_scales<4>(n0 + partial_sums_column<C::BN, THREADS>(), N, SCB, bias, bias_kind);
    cluster_barrier();  // every block's partial tile is complete and visible to the cluster
    write_partial_sums<T, SPLITS, C::BM, C::BN, THREADS>(partial, C::LDR, m0, n0, M, N, out, ldo, scales);
    cluster_barrier();  // no block leaves while another still reads its shared memory
#else
    __trap();  // split K needs thread-block clusters (sm_90); the launcher never asks for it here
#endif
  }
}

#define GEMM_PARAMS                                                                              \
  const T *__restrict__ X, int ldx, const signed char *__restrict__ CB, int ldw,                 \
      const float *__restrict__ SCB, const void *__restrict__ bias, int bias_kind, int M, int N, \
      int K, T *__restrict__ out, int ldo
#define GEMM_ARGS X, ldx, CB, ldw, SCB, bias, bias_kind, M, N, K, out, ldo

// K in one block (any GPU from sm_80) ...
template <typename T, int MT, int NT, int WM, int WN>
__global__ void __launch_bounds__(THREADS) weight_only_gemm(GEMM_PARAMS) {
  allow_dependents();
  wait_for_prerequisites();
  gemm<T, MT, NT, WM, WN, 1>(GEMM_ARGS);
}
// ... or split across a cluster of SPLITS blocks (sm_90).
template <typename T, int MT, int NT, int WM, int WN, int SPLITS>
__global__ void __launch_bounds__(THREADS) CLUSTER_ALONG_Z(SPLITS) weight_only_gemm_split(GEMM_PARAMS) {
  allow_dependents();
  wait_for_prerequisites();
  gemm<T, MT, NT, WM, WN, SPLITS>(GEMM_ARGS);
}

#define SIGNATURE(T) (const T*, int, const signed char*, int, const float*, const void*, int, int, int, int, T*, int)
#define INSTANTIATE(T, MT, NT, WM, WN)                                                     \
  template __global__ void weight_only_gemm<T, MT, NT, WM, WN> SIGNATURE(T);              \
  template __global__ void weight_only_gemm_split<T, MT, NT, WM, WN, 2> SIGNATURE(T);     \
  template __global__ void weight_only_gemm_split<T, MT, NT, WM, WN, 4> SIGNATURE(T);
// Token tiles of 32, 64 and 128 by 128 weight rows. Up to 64 tokens the warps sit side by side
// along the weight rows, so each converted weight multiplies every token of the block (measured
// faster than two rows of warps); 128 tokens take two rows of warps (registers).
#define INSTANTIATE_TILES(T) INSTANTIATE(T, 2, 2, 1, 8) INSTANTIATE(T, 4, 2, 1, 8) INSTANTIATE(T, 4, 4, 2, 4)
INSTANTIATE_TILES(__half)
INSTANTIATE_TILES(__nv_bfloat16)
