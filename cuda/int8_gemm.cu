// int8 x int8 -> int32 GEMM on tensor cores (mma.sync m16n8k32, sm_80+) with the LLM.int8()
// epilogue fused: no int32 result goes through memory.
//
// Math, for A = Xq [M, K] (int8 rows of the activations), B = Wq [N, K] (int8 rows of the weight):
//   C         = the outlier columns: bits set in `mask` (null = none), complete before the launch
//   acc[m,n]  = sum_{k not in C} A[m,k] * B[n,k]                         (exact int32: the main
//               loop zeroes the outlier columns of each A tile in shared memory, as the CPU backend
//               zeroes them in Xq)
//   o[m,n]    = sum_{c in C} X[m,c] * B[n,c]                             (fp32 accumulation)
//   out[m,n]  = (acc[m,n] * (absmax[m] / 127) + o[m,n]) * (SCB[n] / 127) + bias[n]
// The outlier sum o is a matrix product over the block's ascending list of outlier columns, 32
// columns at a time: X and B gathered from global memory (a warp's lanes along the columns, so
// runs of columns coalesce) into shared memory, the next chunk's loads in flight while tensor
// cores multiply the current one (mma.sync m16n8k16 in fp16 or bf16 with fp32 accumulators;
// int8 weights are exact in both types). fp32 X uses fp32 multiply-adds instead.
// MODE 0 writes the raw acc (int32, no epilogue, no mask) to out_i32 instead. MODE 2 skips the int8
// main loop and reads acc from out_i32 (an int32 product computed elsewhere, e.g. by cuBLAS, of an
// A whose outlier columns are already zero: zero_outlier_columns.cu), then runs the same
// epilogue: grid and pointers as for MODE 1.
//
// Launch: grid = (ceil(M / BM), ceil(N / 128), splits), block = 256 threads (8 warps; BM = 128:
// 2 x 4 warps of 64 x 32; BM = 64 / 32: 1 x 8 warps of BM x 16), dynamic shared memory =
// gemm_smem_bytes(BM) (3-stage cp.async pipeline of 128-byte K slices, rows padded to 144 bytes
// so that ldmatrix is free of bank conflicts). M tiles vary fastest: blocks running together
// share their weight tile through L2.
// Split K (splits = gridDim.z > 1, few rows): block z sums K tiles [z * k_tiles_per_split, ...),
// stores its int32 partial tile to `partials` (fragment order, coalesced), and the last block of
// a tile to arrive (atomic counter in `tile_counters`, zero before the launch and reset to zero by
// that block) adds the others and runs the epilogue. Integer sums are exact in any order.
// Pointers: A [M, lda] int8, B [N, ldb] int8, absmax [M] f32, SCB [N] f32, bias [N] or null in the
// dtype bias_kind names (common.cuh),
// X [M, ldx] T (the unquantized activations, read only for outlier columns), mask [ceil(K/32)]
// uint32 or null, out [M, ldo] T, out_i32 [M, ldo] int32, partials [splits * tiles * BM * 128]
// int32 and tile_counters [tiles] uint32 (both unused when splits = 1).
// ALIGNED: K, lda and ldb are multiples of 16 and A, B 16-byte aligned (cp.async 16-byte loads);
// otherwise tiles are loaded byte by byte.
#include "common.cuh"

using namespace llmint8;

namespace {
constexpr int BN = 128, BK = 128, STAGES = 3, THREADS = 256;
constexpr int LDS = BK + 16;  // padded smem row stride in bytes (144: ldmatrix conflict-free)
constexpr int OUTLIER_CHUNK = 32;   // outlier columns multiplied at a time
constexpr int COL_CAPACITY = 1024;  // outlier columns listed at a time (more: several windows)
constexpr int LDH = OUTLIER_CHUNK + 8;  // staged outlier row stride in 2-byte elements (80 bytes:
                                        // ldmatrix conflict-free)

// Warp layout of a BM x BN block tile: WARPS_M x WARPS_N warps, each WM x WN, as MT x NT mma
// tiles of 16 x 8 with four int32 accumulators per thread each.
template <int BM> struct Tile {
  static_assert(BM == 32 || BM == 64 || BM == 128, "BM is 32, 64 or 128");
  static constexpr int WARPS_M = BM == 128 ? 2 : 1;
  static constexpr int WARPS_N = 8 / WARPS_M;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static constexpr int ACC = MT * NT * 4;  // accumulators per thread
  static constexpr int STAGE_BYTES = (BM + BN) * LDS;
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x16-byte matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(int* r, const void* smem_row) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// fp32 += fp16 x fp16 (or bf16 x bf16) on a 16 x 8 x 16 tile; register layouts of a, b and c are
// those of mma_s8 with 2-byte elements in place of byte pairs.
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

__device__ __forceinline__ void mma_s8(int* c, const int* a, const int* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Calls f(mt, nt, r, row, col) for each of a thread's accumulators, with the row and column of
// that accumulator inside the block tile (m16n8 C fragment layout).
template <int BM, typename F>
__device__ __forceinline__ void for_each_acc(int warp_m, int warp_n, int lane, F f) {
  using C = Tile<BM>;
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        f(mt, nt, r, warp_m * C::WM + mt * 16 + g + (r >> 1) * 8,
          warp_n * C::WN + nt * 8 + 2 * q + (r & 1));
}

// Loads rows [row0, row0 + ROWS) x columns [k0, k0 + BK) of a row-major int8 matrix into smem,
// zero-filling outside [0, rows) x [0, K).
template <int ROWS, bool ALIGNED>
__device__ __forceinline__ void load_tile(signed char* smem, const signed char* g, int ld,
                                          int rows, int K, int row0, int k0) {
  constexpr int CHUNKS = ROWS * BK / 16;
  for (int c = threadIdx.x; c < CHUNKS; c += THREADS) {
    const int r = c / (BK / 16), col = (c % (BK / 16)) * 16;
    const int grow = row0 + r, gk = k0 + col;
    signed char* dst = smem + r * LDS + col;
    if (ALIGNED) {
      const bool inside = grow < rows && gk < K;
      const signed char* src = inside ? g + (long long)grow * ld + gk : g;
      cp_async16(dst, src, inside ? 16 : 0);
    } else {
      int4 chunk;
      signed char* bytes = reinterpret_cast<signed char*>(&chunk);
#pragma unroll
      for (int i = 0; i < 16; ++i)
        bytes[i] = (grow < rows && gk + i < K) ? g[(long long)grow * ld + gk + i] : 0;
      *reinterpret_cast<int4*>(dst) = chunk;
    }
  }
}

// The A and B fragments of one 32-byte K step of a warp's tile, from row-major shared memory of
// row stride `ld` bytes at byte column kk. A fragment (16 rows x 32 bytes): matrices (rows 0-7 |
// 8-15) x (bytes 0-15 | 16-31) give registers a0..a3 = (g, 4q), (g + 8, 4q), (g, 16 + 4q),
// (g + 8, 16 + 4q). B fragments of two n8 tiles (8 rows x 32 bytes each) come from one x4 load.
// The same bytes are the fragments of m16n8k32 (int8) and of m16n8k16 (2-byte elements).
template <int BM>
__device__ __forceinline__ void load_fragments(int (&a)[Tile<BM>::MT][4], int (&b)[Tile<BM>::NT][2],
                                               const signed char* As, const signed char* Bs,
                                               int ld, int kk, int warp_m, int warp_n, int lane) {
  using C = Tile<BM>;
  const int sub = lane >> 3, sub_row = lane & 7;
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt) {
    const int row = warp_m * C::WM + mt * 16 + sub_row + (sub & 1) * 8;
    ldmatrix_x4(a[mt], As + row * ld + kk + (sub >> 1) * 16);
  }
#pragma unroll
  for (int pair = 0; pair < C::NT / 2; ++pair) {
    int r[4];
    const int row = warp_n * C::WN + pair * 16 + (sub >> 1) * 8 + sub_row;
    ldmatrix_x4(r, Bs + row * ld + kk + (sub & 1) * 16);
    b[2 * pair][0] = r[0];
    b[2 * pair][1] = r[1];
    b[2 * pair + 1][0] = r[2];
    b[2 * pair + 1][1] = r[3];
  }
}

// The mask bits of K tile kt (BK = 128 columns: four words), zero beyond the mask's `words`.
__device__ __forceinline__ void tile_mask(unsigned (&bits)[BK / 32], const unsigned int* mask,
                                          int words, int kt) {
#pragma unroll
  for (int j = 0; j < BK / 32; ++j) {
    const int w = kt * (BK / 32) + j;
    bits[j] = w < words ? __ldg(mask + w) : 0u;
  }
}
}  // namespace

template <typename T, bool ALIGNED, int MODE, int BM>
__global__ void __launch_bounds__(THREADS) int8_gemm(
    const signed char* __restrict__ A, const signed char* __restrict__ B, int M, int N, int K,
    int lda, int ldb, const float* __restrict__ absmax, const float* __restrict__ SCB,
    const void* __restrict__ bias, int bias_kind, const T* __restrict__ X, int ldx,
    const unsigned int* __restrict__ mask, T* __restrict__ out, int* __restrict__ out_i32,
    int ldo, int* __restrict__ partials, unsigned int* __restrict__ tile_counters,
    int k_tiles_per_split) {
  using C = Tile<BM>;
  extern __shared__ __align__(16) signed char smem[];
  const int bm = blockIdx.x * BM, bn = blockIdx.y * BN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;

  int acc[C::MT][C::NT][4];
#pragma unroll
  for (int i = 0; i < C::MT; ++i)
#pragma unroll
    for (int j = 0; j < C::NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;

  const int k_tiles = (K + BK - 1) / BK;
  const int kt_begin = MODE == 2 ? 0 : blockIdx.z * k_tiles_per_split;
  const int kt_end = MODE == 2 ? 0 : min(k_tiles, kt_begin + k_tiles_per_split);
  const int n_tiles = max(0, kt_end - kt_begin);
  auto stage_a = [&](int s) { return smem + s * C::STAGE_BYTES; };
  auto stage_b = [&](int s) { return smem + s * C::STAGE_BYTES + BM * LDS; };
  const int words = mask != nullptr ? (K + 31) / 32 : 0;  // of the outlier mask
  unsigned bits[BK / 32] = {0u, 0u, 0u, 0u};                 // the mask of the current K tile
  if (MODE == 1 && words && n_tiles > 0) tile_mask(bits, mask, words, kt_begin);

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < n_tiles) {
      load_tile<BM, ALIGNED>(stage_a(s), A, lda, M, K, bm, (kt_begin + s) * BK);
      load_tile<BN, ALIGNED>(stage_b(s), B, ldb, N, K, bn, (kt_begin + s) * BK);
    }
    cp_async_commit();
  }

  for (int i = 0; i < n_tiles; ++i) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int next = i + STAGES - 1;
    if (next < n_tiles) {
      load_tile<BM, ALIGNED>(stage_a(next % STAGES), A, lda, M, K, bm, (kt_begin + next) * BK);
      load_tile<BN, ALIGNED>(stage_b(next % STAGES), B, ldb, N, K, bn, (kt_begin + next) * BK);
    }
    cp_async_commit();

    if (MODE == 1 && words) {
      // Take the outlier columns out of the int8 product: zero them in this A tile.
      unsigned next_bits[BK / 32];
      if (i + 1 < n_tiles) tile_mask(next_bits, mask, words, kt_begin + i + 1);  // in flight
      if ((bits[0] | bits[1] | bits[2] | bits[3]) != 0u) {  // the same in every thread
        signed char* As = stage_a(i % STAGES);
        for (int idx = threadIdx.x; idx < BM * (BK / 32); idx += THREADS) {
          const int r = idx % BM, j = idx / BM;
          unsigned rest = j == 0 ? bits[0] : j == 1 ? bits[1] : j == 2 ? bits[2] : bits[3];
          for (; rest; rest &= rest - 1) As[r * LDS + j * 32 + __ffs(rest) - 1] = 0;
        }
        __syncthreads();
      }
#pragma unroll
      for (int j = 0; j < BK / 32; ++j) bits[j] = i + 1 < n_tiles ? next_bits[j] : 0u;
    }

    const signed char* As = stage_a(i % STAGES);
    const signed char* Bs = stage_b(i % STAGES);
#pragma unroll
    for (int kk = 0; kk < BK; kk += 32) {
      int a[C::MT][4], b[C::NT][2];
      load_fragments<BM>(a, b, As, Bs, LDS, kk, warp_m, warp_n, lane);
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::NT; ++nt) mma_s8(acc[mt][nt], a[mt], b[nt]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  if (MODE != 2 && gridDim.z > 1) {
    // Split K: publish this block's partial tile; the last block of the tile sums them all.
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    constexpr int CHUNKS = C::ACC / 4;  // int4 per thread
    int4* slab = reinterpret_cast<int4*>(partials) + (long long)tile * gridDim.z * CHUNKS * THREADS;
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::NT; ++nt)
        slab[((long long)blockIdx.z * CHUNKS + mt * C::NT + nt) * THREADS + threadIdx.x] =
            make_int4(acc[mt][nt][0], acc[mt][nt][1], acc[mt][nt][2], acc[mt][nt][3]);
    if (!last_to_arrive(&tile_counters[tile], gridDim.z)) return;
    for (int z = 0; z < (int)gridDim.z; ++z) {
      if (z == (int)blockIdx.z) continue;
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::NT; ++nt) {
          const int4 p = __ldcg(&slab[((long long)z * CHUNKS + mt * C::NT + nt) * THREADS + threadIdx.x]);
          acc[mt][nt][0] += p.x;
          acc[mt][nt][1] += p.y;
          acc[mt][nt][2] += p.z;
          acc[mt][nt][3] += p.w;
        }
    }
    if (threadIdx.x == 0) tile_counters[tile] = 0;  // ready for the next launch
  }

  if (MODE == 2) {
    for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
      const int m = bm + lm, n = bn + ln;
      acc[mt][nt][r] = (m < M && n < N) ? out_i32[(long long)m * ldo + n] : 0;
    });
  }

  if (MODE == 0) {
    for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
      const int m = bm + lm, n = bn + ln;
      if (m < M && n < N) out_i32[(long long)m * ldo + n] = acc[mt][nt][r];
    });
    return;
  }

  // Row scales first; the outlier sum o is added in these units and the column scale comes last.
  float v[C::MT][C::NT][4];
  for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
    const int m = min(bm + lm, M - 1);
    v[mt][nt][r] = static_cast<float>(acc[mt][nt][r]) * (absmax[m] / 127.0f);
  });

  // The block's ascending list of the outlier columns, COL_CAPACITY at a time.
  int* cols = reinterpret_cast<int*>(smem);  // [COL_CAPACITY]
  signed char* staged = smem + COL_CAPACITY * sizeof(int);
  __shared__ int scan_scratch[THREADS / 32 + 1];
  OutlierColumns<THREADS> outliers;
  outliers.count(mask, 0, words, scan_scratch);
  const int n_total = outliers.total;
  auto gather = [&](int window) { outliers.fill(mask, window, COL_CAPACITY, cols); };

  if constexpr (sizeof(T) == 2) {
    // Tensor cores: chunks of 32 columns staged as X_s [BM][LDH] and W_s [BN][LDH] (T). Warp w
    // stages rows w, w + 8, ... and lane j column j of the chunk (runs of columns coalesce).
    T* x_s = reinterpret_cast<T*>(staged);
    T* w_s = x_s + BM * LDH;
    for (int window = 0; window < n_total; window += COL_CAPACITY) {
      gather(window);
      const int in_window = min(COL_CAPACITY, n_total - window);
      for (int j0 = 0; j0 < in_window; j0 += OUTLIER_CHUNK) {
        const bool live = lane < in_window - j0;
        const int c = live ? cols[j0 + lane] : 0;
#pragma unroll 4
        for (int r = warp; r < BM; r += 8) {
          const int m = bm + r;
          x_s[r * LDH + lane] = live && m < M ? X[(long long)m * ldx + c] : from_float<T>(0.0f);
        }
#pragma unroll 4
        for (int r = warp; r < BN; r += 8) {
          const int n = bn + r;
          w_s[r * LDH + lane] =
              from_float<T>(live && n < N ? static_cast<float>(B[(long long)n * ldb + c]) : 0.0f);
        }
        __syncthreads();
        const signed char* xs = reinterpret_cast<const signed char*>(x_s);
        const signed char* ws = reinterpret_cast<const signed char*>(w_s);
#pragma unroll
        for (int kk = 0; kk < OUTLIER_CHUNK * 2; kk += 32) {
          int a[C::MT][4], b[C::NT][2];
          load_fragments<BM>(a, b, xs, ws, LDH * 2, kk, warp_m, warp_n, lane);
#pragma unroll
          for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < C::NT; ++nt) mma_f16(v[mt][nt], a[mt], b[nt], T{});
        }
        __syncthreads();
      }
    }
  } else {
    // fp32 X: multiply-adds over chunks staged as x_s [BM][chunk] and w_s [BN][chunk] (float).
    float* x_s = reinterpret_cast<float*>(staged);
    float* w_s = x_s + BM * OUTLIER_CHUNK;
    for (int window = 0; window < n_total; window += COL_CAPACITY) {
      gather(window);
      const int in_window = min(COL_CAPACITY, n_total - window);
      for (int j0 = 0; j0 < in_window; j0 += OUTLIER_CHUNK) {
        const int nc = min(OUTLIER_CHUNK, in_window - j0);
        for (int i = threadIdx.x; i < BM * nc; i += THREADS) {
          const int r = i / nc, j = i % nc, m = bm + r;
          x_s[r * OUTLIER_CHUNK + j] = m < M ? to_float(X[(long long)m * ldx + cols[j0 + j]]) : 0.0f;
        }
        for (int i = threadIdx.x; i < BN * nc; i += THREADS) {
          const int r = i / nc, j = i % nc, n = bn + r;
          w_s[r * OUTLIER_CHUNK + j] = n < N ? static_cast<float>(B[(long long)n * ldb + cols[j0 + j]]) : 0.0f;
        }
        __syncthreads();
        for (int j = 0; j < nc; ++j) {
          for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
            v[mt][nt][r] += x_s[lm * OUTLIER_CHUNK + j] * w_s[ln * OUTLIER_CHUNK + j];
          });
        }
        __syncthreads();
      }
    }
  }

  for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
    const int m = bm + lm, n = bn + ln;
    if (m < M && n < N) {
      const float y = v[mt][nt][r] * (SCB[n] / 127.0f) + load_bias(bias, bias_kind, n);
      out[(long long)m * ldo + n] = from_float<T>(y);
    }
  });
}

#define INSTANTIATE(T, ALIGNED, MODE, BM)                                                      \
  template __global__ void int8_gemm<T, ALIGNED, MODE, BM>(                                    \
      const signed char*, const signed char*, int, int, int, int, int, const float*,           \
      const float*, const void*, int, const T*, int, const unsigned int*, T*, int*, int, int*, \
      unsigned int*, int);
#define INSTANTIATE_TILES(T, ALIGNED, MODE) \
  INSTANTIATE(T, ALIGNED, MODE, 32) INSTANTIATE(T, ALIGNED, MODE, 64) INSTANTIATE(T, ALIGNED, MODE, 128)
INSTANTIATE_TILES(__half, true, 1)
INSTANTIATE_TILES(__half, false, 1)
INSTANTIATE_TILES(__nv_bfloat16, true, 1)
INSTANTIATE_TILES(__nv_bfloat16, false, 1)
INSTANTIATE_TILES(float, true, 1)
INSTANTIATE_TILES(float, false, 1)
INSTANTIATE_TILES(__half, true, 0)
INSTANTIATE_TILES(__half, false, 0)
INSTANTIATE(__half, true, 2, 128)
INSTANTIATE(__nv_bfloat16, true, 2, 128)
INSTANTIATE(float, true, 2, 128)
