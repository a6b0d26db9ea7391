// Shared helpers for llmint8's kernels: element conversion and the row quantization rule.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace llmint8 {

// The GEMM multiplies the gathered outlier columns in chunks of this many (gather_outlier_columns.cu
// pads its rows with zeros to a multiple of it).
constexpr int OUTLIER_CHUNK = 64;

__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(float v) { return v; }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }

// Two adjacent outputs as one store (p aligned to the pair), each rounded as from_float does.
__device__ __forceinline__ void store_pair(__half* p, float a, float b) {
  *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
}
__device__ __forceinline__ void store_pair(__nv_bfloat16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}
__device__ __forceinline__ void store_pair(float* p, float a, float b) {
  *reinterpret_cast<float2*>(p) = make_float2(a, b);
}

// round(x * inverse) half to even, clamped to [-127, 127]; NaN -> 0 (the row's scale carries it).
// `inverse` is fp32(fp32(1 / absmax) * 127), computed once per row (0 for an all-zero row), exactly
// as the CPU backend and bitsandbytes compute it, so all produce the same int8 values bit for bit.
__device__ __forceinline__ signed char quantize_value(float x, float inverse) {
  float scaled = rintf(x * inverse);
  if (scaled != scaled) return 0;
  scaled = fminf(fmaxf(scaled, -127.0f), 127.0f);
  return static_cast<signed char>(static_cast<int>(scaled));
}

// bias[n] of a bias in any float dtype: kind 0 = none, 1 = fp16, 2 = bf16, 3 = fp32.
__device__ __forceinline__ float load_bias(const void* bias, int kind, int n) {
  switch (kind) {
    case 1: return __half2float(static_cast<const __half*>(bias)[n]);
    case 2: return __bfloat162float(static_cast<const __nv_bfloat16*>(bias)[n]);
    case 3: return static_cast<const float*>(bias)[n];
    default: return 0.0f;
  }
}

// fp32 += fp16 x fp16 (or bf16 x bf16) on a 16 x 8 x 16 tile; a: 16 x 16 row-major
// (a0: row g, columns 2q, 2q + 1; a1: row g + 8; a2, a3: columns + 8), b: 16 x 8 column-major
// (b0: column g, rows 2q, 2q + 1; b1: rows + 8), c: 16 x 8 (c0, c1: row g, columns 2q, 2q + 1;
// c2, c3: row g + 8), for lane = 4g + q.
__device__ __forceinline__ void mma_f16(float* c, const int* a, const int* b, __half) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_f16(float* c, const int* a, const int* b, __nv_bfloat16) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// 16 bytes from global to shared memory without a register round trip (sm_80+); bytes past
// src_bytes (0 or 16) are zero-filled.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
// 16 bytes of a weight stream (read once): with a 256-byte L2 prefetch (the next K tiles of the row).
__device__ __forceinline__ void cp_async16_stream(void* smem, const void* gmem, int src_bytes) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

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

// 16 consecutive bytes of a row from column k < K: one vector load when ALIGNED (the row and k
// 16-byte aligned, K a multiple of 16), else byte by byte, zero past K.
template <bool ALIGNED>
__device__ __forceinline__ int4 load16(const signed char* p, int k, int K) {
  if (ALIGNED) return __ldg(reinterpret_cast<const int4*>(p + k));
  int4 v;
  signed char* b = reinterpret_cast<signed char*>(&v);
#pragma unroll
  for (int i = 0; i < 16; ++i) b[i] = k + i < K ? p[k + i] : 0;
  return v;
}

__device__ __forceinline__ bool mask_bit(const unsigned int* mask, int col) {
  return (mask[col >> 5] >> (col & 31)) & 1u;
}

// Split K: called by every thread of a block after it stored its partial sums; true in every
// thread of the block that arrives last at `counter` (one of `arrivals` blocks), which then sees
// the others' partials (read them with __ldcg). The counter must start at zero.
__device__ __forceinline__ bool last_to_arrive(unsigned int* counter, unsigned int arrivals) {
  __shared__ int is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(counter, 1u) == arrivals - 1;
  __syncthreads();
  if (is_last) __threadfence();
  return is_last;
}

// The outlier columns of mask words [first_word, last_word) as an ascending list (a deterministic
// order for floating-point sums), `capacity` columns at a time. Every thread of a block of
// THREADS threads calls count() once, then fill() once per window: each thread owns a contiguous
// run of words, and a block-wide exclusive scan of their bit counts gives each column its rank.
template <int THREADS>
struct OutlierColumns {
  int first, w_begin, w_end, total;

  // `scratch`: shared memory of THREADS / 32 + 1 ints. Ends with a barrier.
  __device__ __forceinline__ void count(const unsigned int* mask, int first_word, int last_word,
                                        int* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int words = max(0, last_word - first_word);
    const int per_thread = (words + THREADS - 1) / THREADS;
    w_begin = first_word + min(words, (int)threadIdx.x * per_thread);
    w_end = min(last_word, w_begin + per_thread);
    int mine = 0;
    for (int w = w_begin; w < w_end; ++w) mine += __popc(mask[w]);
    int inclusive = mine;
    for (int offset = 1; offset < 32; offset <<= 1) {
      const int other = __shfl_up_sync(0xffffffffu, inclusive, offset);
      if (lane >= offset) inclusive += other;
    }
    if (lane == 31) scratch[warp] = inclusive;
    __syncthreads();
    if (threadIdx.x == 0) {
      int running = 0;
      for (int i = 0; i < THREADS / 32; ++i) {
        const int c = scratch[i];
        scratch[i] = running;
        running += c;
      }
      scratch[THREADS / 32] = running;
    }
    __syncthreads();
    first = scratch[warp] + inclusive - mine;
    total = scratch[THREADS / 32];
  }

  // list[0, min(capacity, total - window)) = the columns of rank [window, window + capacity).
  // Ends with a barrier.
  __device__ __forceinline__ void fill(const unsigned int* mask, int window, int capacity,
                                       int* list) const {
    int rank = first;
    for (int w = w_begin; w < w_end && rank < window + capacity; ++w)
      for (unsigned rest = mask[w]; rest; rest &= rest - 1, ++rank)
        if (rank >= window && rank < window + capacity) list[rank - window] = w * 32 + __ffs(rest) - 1;
    __syncthreads();
  }
};

// out[m, n .. n + COUNT) = sums * SCB / 127 + bias, for the columns inside N; pairs as one store
// when `pairs` (out and ldo keep pairs 4-byte aligned; n is even).
template <typename T, int COUNT>
__device__ __forceinline__ void write_outputs(T* out, int ldo, int m, int n, int N, const float* sums,
                                              const float* SCB, const void* bias, int bias_kind,
                                              bool pairs) {
  T* row = out + (long long)m * ldo;
#pragma unroll
  for (int j = 0; j < COUNT; j += 2) {
    const int c = n + j;
    if (c >= N) break;
    const float v0 = sums[j] * (SCB[c] / 127.0f) + load_bias(bias, bias_kind, c);
    if (c + 1 < N) {
      const float v1 = sums[j + 1] * (SCB[c + 1] / 127.0f) + load_bias(bias, bias_kind, c + 1);
      if (pairs) {
        store_pair(row + c, v0, v1);
      } else {
        row[c] = from_float<T>(v0);
        row[c + 1] = from_float<T>(v1);
      }
    } else {
      row[c] = from_float<T>(v0);
    }
  }
}

// The scales SCB[c] / 127 and biases of COUNT output columns c from n (zeros past N), loaded once
// by a thread that writes these columns in several rows, before the epilogue's waits:
// write_partial_sums' loop then waits on no global load (the loads in each of its iterations, not
// hoisted past the previous iteration's stores to `out`, cost a round trip to L2 each:
// benches/NOTES.md v29; weight_only_wgmma.cu's stream-K tiles likewise, v30).
template <int COUNT> struct ColumnScales {
  float scale[COUNT], bias[COUNT];
};
template <int COUNT>
__device__ __forceinline__ ColumnScales<COUNT> load_column_scales(int n, int N, const float* SCB, const void* bias,
                                                                  int bias_kind) {
  ColumnScales<COUNT> s;
#pragma unroll
  for (int j = 0; j < COUNT; ++j) {
    const bool inside = n + j < N;
    s.scale[j] = inside ? SCB[n + j] / 127.0f : 0.0f;
    s.bias[j] = inside ? load_bias(bias, bias_kind, n + j) : 0.0f;
  }
  return s;
}

// out[m, n .. n + 4) = sums * scale + bias (write_outputs' arithmetic), for the columns inside N:
// one 8-byte store where `quads` (out and ldo keep groups of four 8-byte aligned; n a multiple of
// 4), pairs as one store where `pairs`.
template <typename T>
__device__ __forceinline__ void write_scaled_quad(T* out, int ldo, int m, int n, int N, const float (&sums)[4],
                                                  const ColumnScales<4>& s, bool pairs, bool quads) {
  T* row = out + (long long)m * ldo + n;
  float v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = sums[j] * s.scale[j] + s.bias[j];
  if (n + 4 <= N && quads && sizeof(T) == 2) {
    T h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = from_float<T>(v[j]);
    *reinterpret_cast<uint2*>(row) = *reinterpret_cast<const uint2*>(h);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; j += 2) {
    if (n + j >= N) break;
    if (n + j + 1 < N) {
      if (pairs) {
        store_pair(row + j, v[j], v[j + 1]);
      } else {
        row[j] = from_float<T>(v[j]);
        row[j + 1] = from_float<T>(v[j + 1]);
      }
    } else {
      row[j] = from_float<T>(v[j]);
    }
  }
}

// Programmatic dependent launch (sm_90; the host launches every kernel with
// cudaLaunchAttributeProgrammaticStreamSerialization there, cuda_kernels.Kernel): a kernel may start
// while the kernel before it on the stream is still running. Each kernel calls
// `allow_dependents()` first (the next kernel may be scheduled once every block of this one has
// started) and `wait_for_prerequisites()` before it reads anything an earlier kernel writes or
// writes anything at all: it returns once the kernel before has completed and its writes are
// visible (that kernel waited for its own predecessor before it could complete). Between the two a
// kernel only sets up its own shared memory (L2 prefetches of the weight's first tiles there
// measured slower: benches/NOTES.md v16). Without the attribute (or before sm_90) both are no-ops.
__device__ __forceinline__ void allow_dependents() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wait_for_prerequisites() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

#if __CUDA_ARCH__ >= 900
// Thread-block clusters (sm_90): a barrier of all the cluster's threads that orders their shared
// memory, and a load from the shared memory of the cluster's block `rank`.
__device__ __forceinline__ void cluster_barrier() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
__device__ __forceinline__ float4 load_from_block(const float* p, unsigned rank) {
  unsigned local = static_cast<unsigned>(__cvta_generic_to_shared(p)), remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
  float4 v;
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(remote)
               : "memory");
  return v;
}
#define CLUSTER_ALONG_Z(n) __cluster_dims__(1, 1, n)
#define CLUSTER_ALONG_Y(n) __cluster_dims__(1, n, 1)

// The first of the four output columns a thread writes in every row of write_partial_sums' tile
// (COLS columns, THREADS threads: a thread's columns are the same in each row it writes).
template <int COLS, int THREADS> __device__ __forceinline__ int partial_sums_column() {
  static_assert(THREADS % (COLS / 4) == 0, "a thread writes the same columns in every row");
  return (threadIdx.x % (COLS / 4)) * 4;
}

// The end of a split K, by every thread (THREADS per block) of each of the SPLITS blocks of a
// thread-block cluster along grid z, once each block's partial tile (ROWS x COLS fp32, rows `ld`
// floats apart, at `partial` in its shared memory) is complete and visible (cluster_barrier):
// block r adds rows [r, r + 1) * ROWS / SPLITS of all partials in rank order (deterministic) and
// writes them, scaled and biased (write_scaled_quad with `scales`, the thread's columns from
// n0 + partial_sums_column(), loaded before the barrier), to out[m0 + row, n0 + column]. With
// SPLITS = 1 the block writes its own tile.
template <typename T, int SPLITS, int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void write_partial_sums(const float* partial, int ld, int m0, int n0, int M, int N,
                                                   T* out, int ldo, const ColumnScales<4>& scales) {
  constexpr int MINE = ROWS / SPLITS, QUADS = COLS / 4;
  const int col = partial_sums_column<COLS, THREADS>();
  const bool pairs = ((reinterpret_cast<unsigned long long>(out) | (unsigned)ldo * sizeof(T)) & 3) == 0;
  const bool quads = ((reinterpret_cast<unsigned long long>(out) | (unsigned)ldo * sizeof(T)) & 7) == 0;
#pragma unroll 2
  for (int i = threadIdx.x; i < MINE * QUADS; i += THREADS) {
    const int row = blockIdx.z * MINE + i / QUADS;
    if (m0 + row >= M) break;  // rows ascend with i
    const float* p = partial + row * ld + col;
    float4 sum = SPLITS == 1 ? *reinterpret_cast<const float4*>(p) : load_from_block(p, 0);
#pragma unroll
    for (int r = 1; r < SPLITS; ++r) {
      const float4 v = load_from_block(p, r);
      sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
    }
    const float sums[4] = {sum.x, sum.y, sum.z, sum.w};
    write_scaled_quad<T>(out, ldo, m0 + row, n0 + col, N, sums, scales, pairs, quads);
  }
}
#else
#define CLUSTER_ALONG_Z(n)
#define CLUSTER_ALONG_Y(n)
#endif
}  // namespace llmint8
