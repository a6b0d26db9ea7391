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
// 64 columns lane 4g + q owns the 16 contiguous columns [16q, 16q + 16) (one 16-byte load per
// weight row, two 16-byte shared-memory reads per token), and mma step s (0..3) takes columns
// 16q + 4s .. 16q + 4s + 3 as its k pairs (2q, 2q + 1) and (2q + 8, 2q + 9). A and B follow the
// same permutation of K, so each product still sums every column once.
//
// Launch: grid = (ceil(M / (8 * TOKEN_TILES)), ceil(N / (16 * ROW_WARPS)), 1), block = 256
// threads (8 warps), dynamic shared memory weight_only_smem_bytes(TOKEN_TILES). A block owns
// 16 * ROW_WARPS weight rows and 8 * TOKEN_TILES tokens (token tiles vary fastest: blocks sharing
// weight rows run together and share them through L2). Its warps form ROW_WARPS x K_WARPS
// (8 / ROW_WARPS): each row warp owns 16 weight rows, the K_WARPS warps of a row warp take the
// 64-column chunks in turn (chunks k, k + K_WARPS, ...). The weights stream from global memory
// straight into registers (each byte read once, the next chunk loaded while the current one is
// multiplied); the activations, which every row warp needs, come through shared memory in stages
// of 512 columns (cp.async, double-buffered), so that a block reads them once. At the end the
// K_WARPS partial sums of each row meet in shared memory and are added in warp order
// (deterministic), then scaled and biased.
// Pointers: X [M, ldx] T, CB [N, ldw] int8, SCB [N] f32, bias [N] or null in the dtype bias_kind
// names (common.cuh), out [M, ldo] T. ALIGNED: K, ldx and ldw multiples of 16 and X, CB 16-byte
// aligned (vector loads); otherwise elements are loaded one by one.
#include "common.cuh"

using namespace llmint8;

namespace {
constexpr int THREADS = 256, WARPS = THREADS / 32, CHUNK = 64;
constexpr int STAGE_COLS = 512, STAGE_CHUNKS = STAGE_COLS / CHUNK;
constexpr int LDX = STAGE_COLS + 8;  // staged row stride in elements (+16 bytes: no bank conflicts)
// Four int8 weights (one 32-bit word, bytes b0..b3) as two packed pairs of T: lo = (b0, b1),
// hi = (b2, b3), exactly. fp16: the byte plus 128 is the mantissa of 1024 + u, minus 1152.
__device__ __forceinline__ void to_pairs(unsigned word, int& lo, int& hi, __half) {
  const unsigned u = word ^ 0x80808080u;  // v + 128 as unsigned bytes
  const __half2 offset = __halves2half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480));
  unsigned l = __byte_perm(u, 0x64646464u, 0x4140), h = __byte_perm(u, 0x64646464u, 0x4342);
  const __half2 a = __hsub2(*reinterpret_cast<__half2*>(&l), offset);
  const __half2 b = __hsub2(*reinterpret_cast<__half2*>(&h), offset);
  lo = *reinterpret_cast<const int*>(&a);
  hi = *reinterpret_cast<const int*>(&b);
}
// bf16 (7 mantissa bits cannot hold u): through fp32, 2^23 + u minus 2^23 + 128.
__device__ __forceinline__ void to_pairs(unsigned word, int& lo, int& hi, __nv_bfloat16) {
  const unsigned u = word ^ 0x80808080u;
  const float offset = 8388736.0f;
  const float f0 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440)) - offset;
  const float f1 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7441)) - offset;
  const float f2 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7442)) - offset;
  const float f3 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7443)) - offset;
  const __nv_bfloat162 a = __floats2bfloat162_rn(f0, f1), b = __floats2bfloat162_rn(f2, f3);
  lo = *reinterpret_cast<const int*>(&a);
  hi = *reinterpret_cast<const int*>(&b);
}

// 16 consecutive bytes of a weight row from column k (zero past K).
template <bool ALIGNED>
__device__ __forceinline__ int4 load_weights(const signed char* row, int k, int K) {
  if (ALIGNED) return k < K ? __ldg(reinterpret_cast<const int4*>(row + k)) : make_int4(0, 0, 0, 0);
  int4 v;
  signed char* b = reinterpret_cast<signed char*>(&v);
#pragma unroll
  for (int i = 0; i < 16; ++i) b[i] = k + i < K ? row[k + i] : 0;
  return v;
}

// Stage `stage` of X (tokens [m0, m0 + TOKENS), columns [stage * 512, + 512)) into `xs`
// [TOKENS][LDX], zeros outside [0, M) x [0, K). ALIGNED: cp.async, waited for by the caller.
template <typename T, int TOKENS, bool ALIGNED>
__device__ __forceinline__ void stage_activations(T* xs, const T* X, int ldx, int M, int K, int m0,
                                                  int stage) {
  constexpr int PIECES = STAGE_COLS / 8;  // 16-byte pieces per row
  const int k0 = stage * STAGE_COLS;
  for (int i = threadIdx.x; i < TOKENS * PIECES; i += THREADS) {
    const int t = i / PIECES, col = (i % PIECES) * 8;
    const int m = m0 + t, k = k0 + col;
    T* dst = xs + t * LDX + col;
    if (ALIGNED) {
      const bool inside = m < M && k < K;
      cp_async16(dst, inside ? X + (long long)m * ldx + k : X, inside ? 16 : 0);
    } else {
      unsigned short* d = reinterpret_cast<unsigned short*>(dst);
      const unsigned short* row = reinterpret_cast<const unsigned short*>(X + (long long)min(m, M - 1) * ldx);
#pragma unroll
      for (int e = 0; e < 8; ++e) d[e] = m < M && k + e < K ? row[k + e] : 0;
    }
  }
}

template <int TOKEN_TILES> constexpr int smem_bytes() {
  return 2 * 8 * TOKEN_TILES * LDX * 2;  // two stages of fp16 / bf16 rows
}
}  // namespace

template <typename T, int TOKEN_TILES, int ROW_WARPS, bool ALIGNED>
__global__ void __launch_bounds__(THREADS) weight_only_linear(
    const T* __restrict__ X, int ldx, const signed char* __restrict__ CB, int ldw,
    const float* __restrict__ SCB, const void* __restrict__ bias, int bias_kind, int M, int N,
    int K, T* __restrict__ out, int ldo) {
  constexpr int K_WARPS = WARPS / ROW_WARPS, ROWS = 16 * ROW_WARPS, TOKENS = 8 * TOKEN_TILES;
  static_assert(WARPS % ROW_WARPS == 0, "ROW_WARPS divides the block's 8 warps");
  extern __shared__ __align__(16) unsigned char smem[];
  T* xs = reinterpret_cast<T*>(smem);  // [2][TOKENS][LDX]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int row_warp = warp % ROW_WARPS, k_warp = warp / ROW_WARPS;
  const int m0 = blockIdx.x * TOKENS, n0 = blockIdx.y * ROWS;

  // This lane's weight rows g and g + 8 of its warp's 16 (clamped: rows past N load zeros).
  const signed char* w_rows[2];
  bool w_inside[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int n = n0 + row_warp * 16 + h * 8 + g;
    w_inside[h] = n < N;
    w_rows[h] = CB + (long long)min(n, N - 1) * ldw;
  }
  auto load_w = [&](int4 (&w)[2], int chunk) {
    const int k = chunk * CHUNK + 16 * q;
#pragma unroll
    for (int h = 0; h < 2; ++h)
      w[h] = w_inside[h] ? load_weights<ALIGNED>(w_rows[h], k, K) : make_int4(0, 0, 0, 0);
  };

  float acc[TOKEN_TILES][4];
#pragma unroll
  for (int tt = 0; tt < TOKEN_TILES; ++tt)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[tt][r] = 0.0f;

  const int chunks = (K + CHUNK - 1) / CHUNK, stages = (K + STAGE_COLS - 1) / STAGE_COLS;
  stage_activations<T, TOKENS, ALIGNED>(xs, X, ldx, M, K, m0, 0);
  cp_async_commit();
  int4 current[2], next[2];
  int chunk = k_warp;
  if (chunk < chunks) load_w(current, chunk);
  for (int stage = 0; stage < stages; ++stage) {
    if (stage + 1 < stages) {
      stage_activations<T, TOKENS, ALIGNED>(xs + ((stage + 1) & 1) * TOKENS * LDX, X, ldx, M, K,
                                            m0, stage + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* stage_x = xs + (stage & 1) * TOKENS * LDX;
    const int stage_end = min(chunks, (stage + 1) * STAGE_CHUNKS);
    for (; chunk < stage_end; chunk += K_WARPS) {
      if (chunk + K_WARPS < chunks) load_w(next, chunk + K_WARPS);
      const int col = (chunk % STAGE_CHUNKS) * CHUNK + 16 * q;
      int4 x[TOKEN_TILES][2];
#pragma unroll
      for (int tt = 0; tt < TOKEN_TILES; ++tt) {
        const int4* row = reinterpret_cast<const int4*>(stage_x + (tt * 8 + g) * LDX + col);
        x[tt][0] = row[0];
        x[tt][1] = row[1];
      }
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        int a[4];
        to_pairs(reinterpret_cast<const unsigned*>(&current[0])[s], a[0], a[2], T{});
        to_pairs(reinterpret_cast<const unsigned*>(&current[1])[s], a[1], a[3], T{});
#pragma unroll
        for (int tt = 0; tt < TOKEN_TILES; ++tt) {
          const int* words = reinterpret_cast<const int*>(&x[tt][0]);  // 8 words, both halves
          const int b[2] = {words[2 * s], words[2 * s + 1]};
          mma_f16(acc[tt], a, b, T{});
        }
      }
      current[0] = next[0];
      current[1] = next[1];
    }
    __syncthreads();  // the buffer read here is refilled by the next iteration's stage
  }

  // c0, c1: weight row g, tokens 2q, 2q + 1; c2, c3: weight row g + 8. Partial sums of the
  // K_WARPS warps of each row warp: [k_warp][token][row], rows padded by one float.
  constexpr int LDP = ROWS + 1;
  static_assert(K_WARPS * TOKENS * LDP * 4 <= smem_bytes<TOKEN_TILES>(), "partials fit");
  float* partial = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int tt = 0; tt < TOKEN_TILES; ++tt)
#pragma unroll
    for (int r = 0; r < 4; ++r)
      partial[(k_warp * TOKENS + tt * 8 + 2 * q + (r & 1)) * LDP + row_warp * 16 + g + (r >> 1) * 8] =
          acc[tt][r];
  __syncthreads();
  for (int i = threadIdx.x; i < TOKENS * ROWS; i += THREADS) {
    const int token = i / ROWS, row = i % ROWS;
    const int m = m0 + token, n = n0 + row;
    if (m >= M || n >= N) continue;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < K_WARPS; ++w) sum += partial[(w * TOKENS + token) * LDP + row];
    out[(long long)m * ldo + n] = from_float<T>(sum * (SCB[n] / 127.0f) + load_bias(bias, bias_kind, n));
  }
}

#define INSTANTIATE(T, TT, RW, ALIGNED)                                                        \
  template __global__ void weight_only_linear<T, TT, RW, ALIGNED>(                             \
      const T*, int, const signed char*, int, const float*, const void*, int, int, int, int, T*, \
      int);
#define INSTANTIATE_WARPS(T, TT, ALIGNED)                                                      \
  INSTANTIATE(T, TT, 1, ALIGNED) INSTANTIATE(T, TT, 2, ALIGNED) INSTANTIATE(T, TT, 4, ALIGNED)  \
  INSTANTIATE(T, TT, 8, ALIGNED)
#define INSTANTIATE_TILES(T, ALIGNED) \
  INSTANTIATE_WARPS(T, 1, ALIGNED) INSTANTIATE_WARPS(T, 2, ALIGNED) INSTANTIATE_WARPS(T, 4, ALIGNED)
INSTANTIATE_TILES(__half, true)
INSTANTIATE_TILES(__half, false)
INSTANTIATE_TILES(__nv_bfloat16, true)
INSTANTIATE_TILES(__nv_bfloat16, false)
