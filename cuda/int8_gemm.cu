// int8 x int8 -> int32 GEMM on tensor cores (mma.sync m16n8k32, sm_80+) with the LLM.int8()
// epilogue fused: no int32 result goes through memory.
//
// Math, for A = Xq [M, K] (int8 rows of the activations, outlier columns already zero:
// gather_outlier_columns.cu), B = Wq [N, K] (int8 rows of the weight), and the outlier columns
// gathered into dense matrices Xc [M, C] (the activations' values) and Wc [N, C] (int8):
//   acc[m,n]  = sum_k A[m,k] * B[n,k]                                    (exact int32)
//   o[m,n]    = sum_j Xc[m,j] * Wc[n,j]                                  (fp32 accumulation)
//   out[m,n]  = (acc[m,n] * (absmax[m] / 127) + o[m,n]) * (SCB[n] / 127) + bias[n]
// C = *outlier_count (0 when the pointer is null), read on the device: no host sync. o is a
// second pipelined matrix product in the epilogue over C in chunks of 64 columns (Xc and Wc rows
// padded with zeros to whole chunks, row stride ldc), on tensor cores for fp16 / bf16 X
// (mma.sync m16n8k16, fp32 accumulators; the int8 weights are exact in both types, converted
// while forming the fragments); fp32 X uses fp32 multiply-adds instead.
// MODE 0 writes the raw acc (int32, no epilogue) to out_i32 instead. MODE 2 skips the int8 main
// loop and reads acc from out_i32 (an int32 product computed elsewhere, e.g. by cuBLAS, of the same
// A), then runs the same epilogue: grid and pointers as for MODE 1, BM = 32 or 64, splits = 1.
//
// Launch: grid = (ceil(M / BM), ceil(N / 128), splits), block = 256 threads (8 warps; BM = 128:
// 2 x 4 warps of 64 x 32; BM = 64 / 32: 1 x 8 warps of BM x 16), dynamic shared memory =
// Tile<BM>::SMEM_BYTES (3-stage cp.async pipeline of 128-byte K slices, rows padded to 144 bytes
// so that ldmatrix is free of bank conflicts; MODE 2: Tile<BM>::STAGED_BYTES). M tiles vary
// fastest: blocks running together share their weight tile through L2.
// Split K (splits = gridDim.z > 1, few rows): block z sums K tiles [z * k_tiles_per_split, ...)
// and (BM < 128) its share of the outlier chunks, stores both partial tiles to `partials` (int32 first, then
// fp32; fragment order, coalesced), and the last block of a tile to arrive (atomic counter in
// `tile_counters`, zero before the launch and reset to zero by that block) adds them and runs the
// epilogue. Integer sums are exact in any order; the fp32 ones are added in the order of z.
// Pointers: A [M, lda] int8, B [N, ldb] int8, absmax [M] f32, SCB [N] f32, bias [N] or null in the
// dtype bias_kind names (common.cuh), Xc [M, ldc] T and Wc [N, ldc] int8 (16-byte aligned, ldc a
// multiple of 64; read only when C > 0), outlier_count [1] int32 or null, out [M, ldo] T,
// out_i32 [M, ldo] int32, partials [2 * splits * tiles * BM * 128] 32-bit words and
// tile_counters [tiles] uint32 (both unused when splits = 1).
// ALIGNED: K, lda and ldb are multiples of 16 and A, B 16-byte aligned (cp.async 16-byte loads);
// otherwise tiles are loaded byte by byte.
#include "common.cuh"

using namespace llmint8;

namespace {
constexpr int BN = 128, BK = 128, STAGES = 3, THREADS = 256;
constexpr int LDS = BK + 16;  // padded smem row stride in bytes (144: ldmatrix conflict-free)
constexpr int CHUNK = OUTLIER_CHUNK;  // outlier columns per step of the outlier product
// Shared-memory row strides of a staged chunk: Xc 128 bytes (fp16 / bf16) padded to 144, ldmatrix
// conflict-free; Wc 64 bytes padded to 80 (the fragments' 2-byte reads conflict-free).
constexpr int LDX_S = 2 * CHUNK + 16, LDW_S = CHUNK + 16;

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
  // MODE 2: the outlier chunks' stages, then the block's int32 product tile (int, row stride
  // LDT) and later its output tile (T, row stride LDY) in the same place.
  static constexpr int OUTLIER_BYTES = STAGES * (BM * (2 * OUTLIER_CHUNK + 16) + BN * (OUTLIER_CHUNK + 16));
  static constexpr int LDT = BN + 4, LDY = BN + 8;
  static constexpr int STAGED_BYTES = OUTLIER_BYTES + BM * LDY * 4;
};

// Four 8x16-byte matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(int* r, const void* smem_row) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
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

// Calls f(mt, nt, h) for each pair of a thread's accumulators: [mt][nt][2h] and [mt][nt][2h + 1]
// are row g + 8h, columns 2q and 2q + 1 of the m16n8 tile (mt, nt).
template <int BM, typename F>
__device__ __forceinline__ void for_each_pair(F f) {
  using C = Tile<BM>;
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) f(mt, nt, h);
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

// Fragments of one 32-byte K step of a warp's tile from row-major shared memory of row stride
// `ld` bytes at byte column kk. A fragment (16 rows x 32 bytes): matrices (rows 0-7 | 8-15) x
// (bytes 0-15 | 16-31) give registers a0..a3 = (g, 4q), (g + 8, 4q), (g, 16 + 4q), (g + 8, 16 + 4q).
// B fragments of two n8 tiles (8 rows x 32 bytes each) come from one x4 load. The same bytes are
// the fragments of m16n8k32 (int8) and of m16n8k16 (2-byte elements).
template <int BM>
__device__ __forceinline__ void load_a_fragments(int (&a)[Tile<BM>::MT][4], const signed char* As,
                                                 int ld, int kk, int warp_m, int lane) {
  using C = Tile<BM>;
  const int sub = lane >> 3, sub_row = lane & 7;
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt) {
    const int row = warp_m * C::WM + mt * 16 + sub_row + (sub & 1) * 8;
    ldmatrix_x4(a[mt], As + row * ld + kk + (sub >> 1) * 16);
  }
}

template <int BM>
__device__ __forceinline__ void load_b_fragments(int (&b)[Tile<BM>::NT][2], const signed char* Bs,
                                                 int ld, int kk, int warp_n, int lane) {
  using C = Tile<BM>;
  const int sub = lane >> 3, sub_row = lane & 7;
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

// Two int8 values as a packed pair of T (the first in the low half), exactly.
__device__ __forceinline__ int pack_pair(unsigned short bytes, __half) {
  __half2 h = __floats2half2_rn(static_cast<float>(static_cast<signed char>(bytes & 0xff)),
                                static_cast<float>(static_cast<signed char>(bytes >> 8)));
  return *reinterpret_cast<int*>(&h);
}
__device__ __forceinline__ int pack_pair(unsigned short bytes, __nv_bfloat16) {
  __nv_bfloat162 h = __floats2bfloat162_rn(static_cast<float>(static_cast<signed char>(bytes & 0xff)),
                                           static_cast<float>(static_cast<signed char>(bytes >> 8)));
  return *reinterpret_cast<int*>(&h);
}

// m16n8k16 B fragments (element type T) of k16 step `k0` (in elements) from int8 rows in shared
// memory (row stride `ld` bytes): b0 = rows' bytes (2q, 2q + 1), b1 = (2q + 8, 2q + 9), row g.
template <int BM, typename T>
__device__ __forceinline__ void load_b_fragments_from_int8(int (&b)[Tile<BM>::NT][2],
                                                           const signed char* Bs, int ld, int k0,
                                                           int warp_n, int lane) {
  using C = Tile<BM>;
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int nt = 0; nt < C::NT; ++nt) {
    const signed char* row = Bs + (warp_n * C::WN + nt * 8 + g) * ld + k0 + 2 * q;
    b[nt][0] = pack_pair(*reinterpret_cast<const unsigned short*>(row), T{});
    b[nt][1] = pack_pair(*reinterpret_cast<const unsigned short*>(row + 8), T{});
  }
}
}  // namespace

// acc += Xc[rows bm.., chunks [first, last)] x Wc[rows bn.., same]^T: the outlier product o of a
// block tile over CHUNK-column chunks, in the C fragment layout (for_each_acc). fp16 / bf16:
// tensor cores, pipelined like the main loop (chunk i + 2 loads by cp.async while chunk i
// multiplies); fp32: multiply-adds. Uses the whole dynamic shared memory; call from every thread
// after the main loop's last barrier. `parts`: PROLOGUE (start the first chunks' loads) and / or
// MAIN_LOOP (the products), so that a caller can start the loads before other work.
constexpr int PROLOGUE = 1, MAIN_LOOP = 2;  // outlier_product's parts

template <typename T, int BM>
__device__ __forceinline__ void outlier_product(float (&acc)[Tile<BM>::MT][Tile<BM>::NT][4],
                                                signed char* smem, const T* Xc,
                                                const signed char* Wc, int ldc, int M, int N,
                                                int bm, int bn, int first, int last,
                                                int parts = PROLOGUE | MAIN_LOOP) {
  using C = Tile<BM>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / C::WARPS_N, warp_n = warp % C::WARPS_N;
  const int chunks = max(0, last - first);
  if constexpr (sizeof(T) == 2) {
    constexpr int STAGE = BM * LDX_S + BN * LDW_S;
    auto stage_x = [&](int s) { return smem + s * STAGE; };
    auto stage_w = [&](int s) { return smem + s * STAGE + BM * LDX_S; };
    auto load_chunk = [&](int s, int j) {
      const signed char* xc = reinterpret_cast<const signed char*>(Xc);
      constexpr int X_PARTS = 2 * CHUNK / 16, W_PARTS = CHUNK / 16;  // 16-byte parts per row
      for (int c = threadIdx.x; c < BM * X_PARTS; c += THREADS) {
        const int r = c / X_PARTS, part = c % X_PARTS, m = bm + r;
        const long long offset = (long long)m * ldc * 2 + j * CHUNK * 2 + part * 16;
        cp_async16(stage_x(s) + r * LDX_S + part * 16, m < M ? xc + offset : xc, m < M ? 16 : 0);
      }
      for (int c = threadIdx.x; c < BN * W_PARTS; c += THREADS) {
        const int r = c / W_PARTS, part = c % W_PARTS, n = bn + r;
        const long long offset = (long long)n * ldc + j * CHUNK + part * 16;
        cp_async16(stage_w(s) + r * LDW_S + part * 16, n < N ? Wc + offset : Wc, n < N ? 16 : 0);
      }
    };
    if (parts & PROLOGUE) {
#pragma unroll
      for (int s = 0; s < STAGES - 1; ++s) {
        if (s < chunks) load_chunk(s, first + s);
        cp_async_commit();
      }
    }
    if (!(parts & MAIN_LOOP)) return;
    for (int i = 0; i < chunks; ++i) {
      cp_async_wait<STAGES - 2>();
      __syncthreads();
      if (i + STAGES - 1 < chunks) load_chunk((i + STAGES - 1) % STAGES, first + i + STAGES - 1);
      cp_async_commit();
#pragma unroll
      for (int k0 = 0; k0 < CHUNK; k0 += 16) {
        int b[C::NT][2];
        load_b_fragments_from_int8<BM, T>(b, stage_w(i % STAGES), LDW_S, k0, warp_n, lane);
        const int sub = lane >> 3, sub_row = lane & 7;
#pragma unroll
        for (int mt = 0; mt < C::MT; ++mt) {
          int a[4];  // one m16 tile at a time: fewer live registers
          const int row = warp_m * C::WM + mt * 16 + sub_row + (sub & 1) * 8;
          ldmatrix_x4(a, stage_x(i % STAGES) + row * LDX_S + k0 * 2 + (sub >> 1) * 16);
#pragma unroll
          for (int nt = 0; nt < C::NT; ++nt) mma_f16(acc[mt][nt], a, b[nt], T{});
        }
      }
    }
    cp_async_wait<0>();
  } else {
    if (!(parts & MAIN_LOOP)) return;
    float* x_s = reinterpret_cast<float*>(smem);  // [BM][CHUNK]
    float* w_s = x_s + BM * CHUNK;                // [BN][CHUNK]
    for (int i = first; i < last; ++i) {
      for (int e = threadIdx.x; e < BM * CHUNK; e += THREADS) {
        const int m = bm + e / CHUNK;
        x_s[e] = m < M ? to_float(Xc[(long long)m * ldc + i * CHUNK + e % CHUNK]) : 0.0f;
      }
      for (int e = threadIdx.x; e < BN * CHUNK; e += THREADS) {
        const int n = bn + e / CHUNK;
        w_s[e] = n < N ? static_cast<float>(Wc[(long long)n * ldc + i * CHUNK + e % CHUNK]) : 0.0f;
      }
      __syncthreads();
      for (int j = 0; j < CHUNK; ++j) {
        for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
          acc[mt][nt][r] += x_s[lm * CHUNK + j] * w_s[ln * CHUNK + j];
        });
      }
      __syncthreads();
    }
  }
}

// Two blocks per SM (shared memory allows 2 for BM = 64 and 128, 3 for 32): at most 128 registers.
constexpr int MIN_BLOCKS_PER_SM = 2;

template <typename T, bool ALIGNED, int MODE, int BM>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS_PER_SM) int8_gemm(
    const signed char* __restrict__ A, const signed char* __restrict__ B, int M, int N, int K,
    int lda, int ldb, const float* __restrict__ absmax, const float* __restrict__ SCB,
    const void* __restrict__ bias, int bias_kind, const T* __restrict__ Xc,
    const signed char* __restrict__ Wc, int ldc, const int* __restrict__ outlier_count,
    T* __restrict__ out, int* __restrict__ out_i32,
    int ldo, int* __restrict__ partials, unsigned int* __restrict__ tile_counters,
    int k_tiles_per_split) {
  using C = Tile<BM>;
  allow_dependents();
  wait_for_prerequisites();
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

    const signed char* As = stage_a(i % STAGES);
    const signed char* Bs = stage_b(i % STAGES);
#pragma unroll
    for (int kk = 0; kk < BK; kk += 32) {
      int a[C::MT][4], b[C::NT][2];
      load_a_fragments<BM>(a, As, LDS, kk, warp_m, lane);
      load_b_fragments<BM>(b, Bs, LDS, kk, warp_n, lane);
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::NT; ++nt) mma_s8(acc[mt][nt], a[mt], b[nt]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  const int chunks = MODE != 0 && outlier_count != nullptr ? (*outlier_count + CHUNK - 1) / CHUNK : 0;
  // acc * (absmax[m] / 127) + o: the output before the column scale and the bias.
  float v[C::MT][C::NT][4];
  auto zero = [](float (&t)[C::MT][C::NT][4]) {
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::NT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) t[mt][nt][r] = 0.0f;
  };
  // A thread's accumulators lie in 2 * MT rows and 2 * NT column pairs: row and column factors
  // are loaded once each, not per accumulator (measured: per-accumulator loads made the
  // epilogue alone take 29 us of 8192x28672 at M = 128, benches/NOTES.md v11).
  const int g = lane >> 2, q = lane & 3;
  auto row_of = [&](int mt, int h) { return bm + warp_m * C::WM + mt * 16 + g + 8 * h; };
  auto column_of = [&](int nt) { return bn + warp_n * C::WN + nt * 8 + 2 * q; };  // even
  auto add_scaled = [&]() {
    float row_scale[C::MT][2];
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) row_scale[mt][h] = absmax[min(row_of(mt, h), M - 1)] / 127.0f;
    for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
      v[mt][nt][r] += static_cast<float>(acc[mt][nt][r]) * row_scale[mt][r >> 1];
    });
  };

  if (MODE != 2 && gridDim.z > 1) {
    // Split K: publish this block's int32 partial tile, then compute its share of the outlier
    // chunks and publish that partial too; the last block of the tile to arrive adds them all
    // (the floats in the order z = 0, 1, ...: the same sum whichever block is last). With
    // 128-row tiles the last block computes every chunk itself: sharing them costs that tile
    // size spilled registers (measured: slower at C = 0 as well).
    constexpr bool SHARE_CHUNKS = BM < 128;
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    constexpr int CHUNKS = C::ACC / 4;  // int4 (float4) per thread
    const long long slab_size = (long long)gridDim.z * CHUNKS * THREADS;
    int4* slab = reinterpret_cast<int4*>(partials) + tile * slab_size;
    float4* float_slab = reinterpret_cast<float4*>(partials) +
                         (long long)gridDim.x * gridDim.y * slab_size + tile * slab_size;
    auto slot = [&](int z, int mt, int nt) {
      return ((long long)z * CHUNKS + mt * C::NT + nt) * THREADS + threadIdx.x;
    };
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::NT; ++nt)
        slab[slot(blockIdx.z, mt, nt)] =
            make_int4(acc[mt][nt][0], acc[mt][nt][1], acc[mt][nt][2], acc[mt][nt][3]);
    if (SHARE_CHUNKS && chunks > 0) {
      const int per_split = (chunks + gridDim.z - 1) / gridDim.z;
      const int first = min(chunks, (int)blockIdx.z * per_split);
      zero(v);
      outlier_product<T, BM>(v, smem, Xc, Wc, ldc, M, N, bm, bn, first, min(chunks, first + per_split));
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::NT; ++nt)
          float_slab[slot(blockIdx.z, mt, nt)] =
              make_float4(v[mt][nt][0], v[mt][nt][1], v[mt][nt][2], v[mt][nt][3]);
    }
    if (!last_to_arrive(&tile_counters[tile], gridDim.z)) return;
    // Every partial from memory, this block's too (its registers are free meanwhile): the int32
    // sums, scaled into v, then the outlier product's in the order of z.
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::NT; ++nt) {
        const int4 p = __ldcg(&slab[slot(0, mt, nt)]);
        acc[mt][nt][0] = p.x;
        acc[mt][nt][1] = p.y;
        acc[mt][nt][2] = p.z;
        acc[mt][nt][3] = p.w;
      }
    for (int z = 1; z < (int)gridDim.z; ++z) {
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::NT; ++nt) {
          const int4 p = __ldcg(&slab[slot(z, mt, nt)]);
          acc[mt][nt][0] += p.x;
          acc[mt][nt][1] += p.y;
          acc[mt][nt][2] += p.z;
          acc[mt][nt][3] += p.w;
        }
    }
    if (threadIdx.x == 0) tile_counters[tile] = 0;  // ready for the next launch
    if (MODE == 1) {
      zero(v);
      add_scaled();
      if (!SHARE_CHUNKS) outlier_product<T, BM>(v, smem, Xc, Wc, ldc, M, N, bm, bn, 0, chunks);
      for (int z = 0; z < (int)gridDim.z && chunks > 0 && SHARE_CHUNKS; ++z) {
#pragma unroll
        for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
          for (int nt = 0; nt < C::NT; ++nt) {
            const float4 o = __ldcg(&float_slab[slot(z, mt, nt)]);
            v[mt][nt][0] += o.x;
            v[mt][nt][1] += o.y;
            v[mt][nt][2] += o.z;
            v[mt][nt][3] += o.w;
          }
      }
    }
  } else {
    if (MODE == 2) {
      // The block's int32 tile comes in whole rows (16-byte cp.async, coalesced: read straight
      // into the fragment layout, each warp load touched 8 rows, and the epilogue ran at a third
      // of the bandwidth), while the first outlier chunks load too; then the fragments come from
      // shared memory. Needs ldo a multiple of 4 and out_i32 16-byte aligned.
      int* tile = reinterpret_cast<int*>(smem + C::OUTLIER_BYTES);
      constexpr int PARTS = BN / 4;  // 16-byte parts of a tile row
      for (int c = threadIdx.x; c < BM * PARTS; c += THREADS) {
        const int r = c / PARTS, part = c % PARTS, m = bm + r, n = bn + 4 * part;
        const bool inside = m < M && n < N;
        cp_async16(tile + r * C::LDT + 4 * part, inside ? out_i32 + (long long)m * ldo + n : out_i32,
                   inside ? 16 : 0);
      }
      cp_async_commit();
      outlier_product<T, BM>(v, smem, Xc, Wc, ldc, M, N, bm, bn, 0, chunks, PROLOGUE);
      if constexpr (sizeof(T) == 2) cp_async_wait<STAGES - 1>();  // the chunks may still load
      else cp_async_wait<0>();
      __syncthreads();
      for_each_pair<BM>([&](int mt, int nt, int h) {
        const int2 pair = *reinterpret_cast<const int2*>(
            tile + (row_of(mt, h) - bm) * C::LDT + column_of(nt) - bn);
        acc[mt][nt][2 * h] = pair.x;
        acc[mt][nt][2 * h + 1] = pair.y;
      });
    }
    if (MODE != 0) {
      zero(v);
      add_scaled();
      outlier_product<T, BM>(v, smem, Xc, Wc, ldc, M, N, bm, bn, 0, chunks,
                             MODE == 2 ? MAIN_LOOP : PROLOGUE | MAIN_LOOP);
    }
  }

  if (MODE == 0) {
    for_each_acc<BM>(warp_m, warp_n, lane, [&](int mt, int nt, int r, int lm, int ln) {
      const int m = bm + lm, n = bn + ln;
      if (m < M && n < N) out_i32[(long long)m * ldo + n] = acc[mt][nt][r];
    });
    return;
  }

  float column_scale[C::NT][2], column_bias[C::NT][2];
#pragma unroll
  for (int nt = 0; nt < C::NT; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int n = min(column_of(nt) + e, N - 1);
      column_scale[nt][e] = SCB[n] / 127.0f;
      column_bias[nt][e] = load_bias(bias, bias_kind, n);
    }
  if constexpr (MODE == 2) {
    // Outputs through shared memory (the tile's place, read into registers before the outlier
    // loop's barriers or the one here) and out in whole 16-byte row pieces where aligned.
    __syncthreads();
    T* staged = reinterpret_cast<T*>(smem + C::OUTLIER_BYTES);
    for_each_pair<BM>([&](int mt, int nt, int h) {
      store_pair(staged + (row_of(mt, h) - bm) * C::LDY + column_of(nt) - bn,
                 v[mt][nt][2 * h] * column_scale[nt][0] + column_bias[nt][0],
                 v[mt][nt][2 * h + 1] * column_scale[nt][1] + column_bias[nt][1]);
    });
    __syncthreads();
    constexpr int E = 16 / sizeof(T), PARTS = BN / E;  // elements per 16 bytes, per row
    const bool vectors = ldo % E == 0 && reinterpret_cast<size_t>(out) % 16 == 0;
    for (int c = threadIdx.x; c < BM * PARTS; c += THREADS) {
      const int r = c / PARTS, n = bn + (c % PARTS) * E, m = bm + r;
      if (m >= M || n >= N) continue;
      const T* from = staged + r * C::LDY + n - bn;
      T* to = out + (long long)m * ldo + n;
      if (vectors && n + E <= N) {
        *reinterpret_cast<int4*>(to) = *reinterpret_cast<const int4*>(from);
      } else {
        for (int e = 0; e < E && n + e < N; ++e) to[e] = from[e];
      }
    }
    return;
  }
  // Column pairs as one store where the output rows allow it (ldo even, out aligned to a pair).
  const bool pairs = ldo % 2 == 0 && reinterpret_cast<size_t>(out) % (2 * sizeof(T)) == 0;
  for_each_pair<BM>([&](int mt, int nt, int h) {
    const int m = row_of(mt, h), n = column_of(nt);
    if (m >= M) return;
    const float y0 = v[mt][nt][2 * h] * column_scale[nt][0] + column_bias[nt][0];
    const float y1 = v[mt][nt][2 * h + 1] * column_scale[nt][1] + column_bias[nt][1];
    T* o = out + (long long)m * ldo + n;
    if (pairs && n + 1 < N) {
      store_pair(o, y0, y1);
    } else {
      if (n < N) o[0] = from_float<T>(y0);
      if (n + 1 < N) o[1] = from_float<T>(y1);
    }
  });
}

#define INSTANTIATE(T, ALIGNED, MODE, BM)                                                      \
  template __global__ void int8_gemm<T, ALIGNED, MODE, BM>(                                    \
      const signed char*, const signed char*, int, int, int, int, int, const float*,           \
      const float*, const void*, int, const T*, const signed char*, int, const int*, T*, int*,   \
      int, int*, unsigned int*, int);
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
// MODE 2 with BM = 128 would hold the int32 product and the float outputs of 64 accumulators
// each per thread at once and spill (304 bytes): BM = 32 and 64 only.
#define INSTANTIATE_STAGED(T) INSTANTIATE(T, true, 2, 32) INSTANTIATE(T, true, 2, 64)
INSTANTIATE_STAGED(__half)
INSTANTIATE_STAGED(__nv_bfloat16)
INSTANTIATE_STAGED(float)
