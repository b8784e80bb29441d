// Tensor-core helpers of the gated-delta-rule kernels: mma.sync m16n8k16 (bf16 x bf16 -> fp32)
// with its operands loaded from shared-memory tiles by ldmatrix (PTX ISA, "Matrix Fragments for
// mma.m16n8k16" and "ldmatrix"). One ldmatrix.x4 fetches a whole 16 x 16 A fragment or the 16 x 16
// B fragments of two n-tiles, so an operand costs one shared-memory instruction per lane where
// element loads cost eight. Either orientation of a stored tile serves as either operand
// (ldmatrix .trans transposes 8 x 8 blocks on the way), so products such as A^T dA or X^T Q need
// no transposed copies. The layout functions are plain constexpr code for host tests; the tile
// strides must make every row start on 16 bytes and an odd number of 16-byte units apart
// (conflict-free ldmatrix).
#pragma once
#include <cuda_bf16.h>

#if defined(__CUDACC__)
#define HYPNOS_HD __host__ __device__
#else
#define HYPNOS_HD
#endif

namespace hypnos::kernels::mma {

/// Where register r of lane `lane` sits in the tiles of one m16n8k8 (tf32) MMA: A is 16 x 8
/// (row-major, 4 registers), B is 8 x 8 (k x n, 2 registers), C/D is 16 x 8 (4). groupID =
/// lane / 4, threadID_in_group = lane % 4, as the PTX ISA names them. The kernels use its C/D
/// layout, which m16n8k16 shares (the host tests check both against the PTX ISA's tables).
struct M16N8K8 {
  static constexpr int kM = 16, kN = 8, kK = 8;
  static constexpr int kARegs = 4, kBRegs = 2, kCRegs = 4;
  static constexpr HYPNOS_HD int a_row(int lane, int r) { return lane / 4 + (r & 1) * 8; }
  static constexpr HYPNOS_HD int a_col(int lane, int r) { return lane % 4 + (r >> 1) * 4; }
  static constexpr HYPNOS_HD int b_row(int lane, int r) { return lane % 4 + r * 4; }  // k
  static constexpr HYPNOS_HD int b_col(int lane, int /*r*/) { return lane / 4; }      // n
  static constexpr HYPNOS_HD int c_row(int lane, int r) { return lane / 4 + (r >> 1) * 8; }
  static constexpr HYPNOS_HD int c_col(int lane, int r) { return 2 * (lane % 4) + (r & 1); }
};

/// Block tiling of an M x N output among NT / 32 warps for the chunk-parallel kernels: warps form
/// a (M / 16) x (warps / (M / 16)) grid, each owning 16 rows and N / that many columns; register r
/// of a lane is element r % 4 of n-tile r / 4 of its warp's slab.
template <int M, int N, int NT>
struct BlockTiling {
  static constexpr int kWarps = NT / 32, kWarpsM = M / 16, kWarpsN = kWarps / kWarpsM;
  static_assert(M % 16 == 0 && kWarps % kWarpsM == 0, "16-row slabs must divide among the warps");
  static_assert(N % (8 * kWarpsN) == 0, "8-column tiles must divide among the warps of a row");
  static constexpr int kWarpCols = N / kWarpsN, kNTiles = kWarpCols / 8, kRegs = kNTiles * 4;
  static constexpr HYPNOS_HD int row0(int warp) { return (warp % kWarpsM) * 16; }
  static constexpr HYPNOS_HD int col0(int warp) { return (warp / kWarpsM) * kWarpCols; }
  static constexpr HYPNOS_HD int row(int warp, int lane, int r) {
    return row0(warp) + M16N8K8::c_row(lane, r % 4);
  }
  static constexpr HYPNOS_HD int col(int warp, int lane, int r) {
    return col0(warp) + (r / 4) * 8 + M16N8K8::c_col(lane, r % 4);
  }
  /// Slot of (row, warp column) in the M x kWarpsN scratch of a row sum.
  static constexpr HYPNOS_HD int scratch_slot(int row, int warp) {
    return row * kWarpsN + warp / kWarpsM;
  }
};

/// Element e (0 = the low half) of register r of lane `lane` in one m16n8k16 bf16 MMA: A is
/// 16 x 16 (4 registers of two elements), B is 16 x 8 (k x n, 2 registers), C/D is 16 x 8 in
/// M16N8K8's accumulator layout.
struct M16N8K16 {
  static constexpr int kM = 16, kN = 8, kK = 16;
  static constexpr HYPNOS_HD int a_row(int lane, int r) { return lane / 4 + (r & 1) * 8; }
  static constexpr HYPNOS_HD int a_col(int lane, int r, int e) {
    return 2 * (lane % 4) + e + (r >> 1) * 8;
  }
  static constexpr HYPNOS_HD int b_row(int lane, int r, int e) {
    return 2 * (lane % 4) + e + r * 8;
  }
  static constexpr HYPNOS_HD int b_col(int lane, int /*r*/) { return lane / 4; }
  static constexpr HYPNOS_HD int c_row(int lane, int r) { return M16N8K8::c_row(lane, r); }
  static constexpr HYPNOS_HD int c_col(int lane, int r) { return M16N8K8::c_col(lane, r); }
};

/// Which row of which 8 x 8 block lane `lane` addresses in an ldmatrix.x4 that loads an operand:
/// block m = lane / 8, row lane % 8. For an A fragment at (row r0, column k0) of the logical 16 x
/// 16 operand stored row-major (kTrans false: element (i, k) at tile(i, k)) the blocks are (rows
/// 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15); stored transposed (element (i, k) at
/// tile(k, i), loaded with .trans) the same blocks come from tile rows k and columns i. For two B
/// n-tiles at (k0, n0) the registers come out as b0, b1 of n-tile n0 then of n0 + 8: stored [N][K]
/// (kTrans true: element (k, n) at tile(n, k), plain ldmatrix) or [K][N] (kTrans false, .trans).
/// Returns the stored (row, column) offset from the fragment's corner.
struct LdmatrixX4 {
  static constexpr HYPNOS_HD int a_row(int lane, bool stored_transposed) {
    return stored_transposed ? lane % 8 + (lane / 16) * 8 : lane % 16;
  }
  static constexpr HYPNOS_HD int a_col(int lane, bool stored_transposed) {
    return stored_transposed ? ((lane / 8) % 2) * 8 : (lane / 16) * 8;
  }
  static constexpr HYPNOS_HD int b_row(int lane, bool stored_transposed) {
    return stored_transposed ? lane % 8 + (lane / 16) * 8 : lane % 8 + ((lane / 8) % 2) * 8;
  }
  static constexpr HYPNOS_HD int b_col(int lane, bool stored_transposed) {
    return stored_transposed ? ((lane / 8) % 2) * 8 : (lane / 16) * 8;
  }
};

#if defined(__CUDACC__)
using bf16 = __nv_bfloat16;

/// Four 8 x 8 b16 blocks from shared memory; `row` is this lane's row address (16-byte aligned).
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const bf16* row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
/// ldmatrix_x4 with each 8 x 8 block transposed.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const bf16* row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/// d += a b for one warp: a 16 x 16, b 16 x 8 (bf16), d 16 x 8 (fp32), layouts of M16N8K16.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const unsigned (&a)[4], unsigned b0,
                                         unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// A logical matrix operand in a bf16 shared-memory tile with row stride ld (elements):
/// element (r, c) at p[r * ld + c], or at p[c * ld + r] when kTransposed.
template <bool kTransposed>
struct SmemOperand {
  const bf16* p;
  int ld;
};
/// The tile itself (row-major) and its transpose.
__device__ __forceinline__ SmemOperand<false> rows_of(const bf16* p, int ld) {
  return {p, ld};
}
__device__ __forceinline__ SmemOperand<true> transpose_of(const bf16* p, int ld) {
  return {p, ld};
}

/// The A fragment of the logical rows [r0, r0 + 16) and columns [k0, k0 + 16).
template <bool kT>
__device__ __forceinline__ void load_a(unsigned (&a)[4], SmemOperand<kT> x, int lane, int r0,
                                       int k0) {
  if constexpr (kT) {  // stored rows are k
    ldmatrix_x4_trans(
        a, x.p + (k0 + LdmatrixX4::a_row(lane, true)) * x.ld + r0 + LdmatrixX4::a_col(lane, true));
  } else {
    ldmatrix_x4(a, x.p + (r0 + LdmatrixX4::a_row(lane, false)) * x.ld + k0 +
                       LdmatrixX4::a_col(lane, false));
  }
}
/// The B fragments of logical rows (k) [k0, k0 + 16) and the two n-tiles at n0 and n0 + 8.
template <bool kT>
__device__ __forceinline__ void load_b2(unsigned (&b)[4], SmemOperand<kT> x, int lane, int k0,
                                        int n0) {
  if constexpr (kT) {  // stored [N][K]: plain ldmatrix
    ldmatrix_x4(
        b, x.p + (n0 + LdmatrixX4::b_row(lane, true)) * x.ld + k0 + LdmatrixX4::b_col(lane, true));
  } else {  // stored [K][N]
    ldmatrix_x4_trans(b, x.p + (k0 + LdmatrixX4::b_row(lane, false)) * x.ld + n0 +
                             LdmatrixX4::b_col(lane, false));
  }
}

/// acc[nt] += A[r0, r0 + 16) x [k0, k_end) B[k0, k_end) x [n0 + 8 nt, + 8) for one warp; kNTiles
/// even, k_end - k0 a multiple of 16.
template <int kNTiles, bool kTA, bool kTB>
__device__ __forceinline__ void warp_mma_bf16(float (&acc)[kNTiles][4], int lane, int r0, int n0,
                                              int k0, int k_end, SmemOperand<kTA> a,
                                              SmemOperand<kTB> b) {
  static_assert(kNTiles % 2 == 0, "B fragments are loaded two n-tiles at a time");
#pragma unroll 2
  for (int kb = k0; kb < k_end; kb += 16) {
    unsigned af[4];
    load_a(af, a, lane, r0, kb);
#pragma unroll
    for (int nt = 0; nt < kNTiles; nt += 2) {
      unsigned bf[4];
      load_b2(bf, b, lane, kb, n0 + nt * 8);
      mma_bf16(acc[nt], af, bf[0], bf[1]);
      mma_bf16(acc[nt + 1], af, bf[2], bf[3]);
    }
  }
}

/// acc0 += A0 B and acc1 += A1 B over the same rows and k range, loading each B fragment once
/// for both products (two A operands against one B: W S and Q S against the state, or the hi and
/// lo halves of a split operand, acc0 and acc1 then being the same array).
template <int kNTiles, bool kTA0, bool kTA1, bool kTB>
__device__ __forceinline__ void warp_mma_bf16_shared_b(float (&acc0)[kNTiles][4],
                                                       float (&acc1)[kNTiles][4], int lane, int r0,
                                                       int n0, int k0, int k_end,
                                                       SmemOperand<kTA0> a0, SmemOperand<kTA1> a1,
                                                       SmemOperand<kTB> b) {
  static_assert(kNTiles % 2 == 0, "B fragments are loaded two n-tiles at a time");
#pragma unroll 2
  for (int kb = k0; kb < k_end; kb += 16) {
    unsigned af0[4], af1[4];
    load_a(af0, a0, lane, r0, kb);
    load_a(af1, a1, lane, r0, kb);
#pragma unroll
    for (int nt = 0; nt < kNTiles; nt += 2) {
      unsigned bf[4];
      load_b2(bf, b, lane, kb, n0 + nt * 8);
      mma_bf16(acc0[nt], af0, bf[0], bf[1]);
      mma_bf16(acc0[nt + 1], af0, bf[2], bf[3]);
      mma_bf16(acc1[nt], af1, bf[0], bf[1]);
      mma_bf16(acc1[nt + 1], af1, bf[2], bf[3]);
    }
  }
}

/// An M x N block tile in mma accumulator layout split among the NT / 32 warps of a block as
/// BlockTiling does (each warp 16 rows and an even number of 8-column tiles), with bf16 operands
/// from shared memory: x[kRegs], row(r), col(r), fill, mma, mma_rows, store_bf16.
template <int M, int N, int NT>
struct Bf16Frag {
  using Tiling = BlockTiling<M, N, NT>;
  static_assert(Tiling::kNTiles % 2 == 0, "B fragments are loaded two n-tiles at a time");
  static constexpr int kRegs = Tiling::kRegs;
  float x[kRegs];
  __device__ __forceinline__ static int row(int r) {
    return Tiling::row(threadIdx.x / 32, threadIdx.x % 32, r);
  }
  __device__ __forceinline__ static int col(int r) {
    return Tiling::col(threadIdx.x / 32, threadIdx.x % 32, r);
  }
  __device__ __forceinline__ void fill(float value) {
#pragma unroll
    for (int r = 0; r < kRegs; ++r) x[r] = value;
  }
  /// x as the warp's [n-tile][register] accumulators.
  __device__ __forceinline__ float (&acc())[Tiling::kNTiles][4] {
    return *reinterpret_cast<float(*)[Tiling::kNTiles][4]>(x);
  }
  /// x[i][j] += sum_{d < depth} a(i, d) b(d, j); depth a multiple of 16.
  template <bool kTA, bool kTB>
  __device__ __forceinline__ void mma(int depth, SmemOperand<kTA> a, SmemOperand<kTB> b) {
    const int warp = threadIdx.x / 32;
    warp_mma_bf16<Tiling::kNTiles>(acc(), threadIdx.x % 32, Tiling::row0(warp), Tiling::col0(warp),
                                   0, depth, a, b);
  }
  /// mma for the output rows below `rows` only: a warp whose slab starts at or past `rows` keeps
  /// its registers, for products whose rows past the last token are zero anyway (a sleep window of
  /// 24 tokens skips half of every 64-row chunk product), with bitwise the same result.
  template <bool kTA, bool kTB>
  __device__ __forceinline__ void mma_rows(int rows, int depth, SmemOperand<kTA> a,
                                           SmemOperand<kTB> b) {
    if (Tiling::row0(threadIdx.x / 32) >= rows) return;
    mma(depth, a, b);
  }
  /// mma_rows of this += a0 b and other += a1 b, each B fragment loaded once for both (other may
  /// be this frag itself: a0 + a1 an operand split into bf16 hi and lo halves).
  template <bool kTA0, bool kTA1, bool kTB>
  __device__ __forceinline__ void mma_rows_shared_b(Bf16Frag& other, int rows, int depth,
                                                    SmemOperand<kTA0> a0, SmemOperand<kTA1> a1,
                                                    SmemOperand<kTB> b) {
    const int warp = threadIdx.x / 32;
    if (Tiling::row0(warp) >= rows) return;
    warp_mma_bf16_shared_b<Tiling::kNTiles>(acc(), other.acc(), threadIdx.x % 32,
                                            Tiling::row0(warp), Tiling::col0(warp), 0, depth, a0,
                                            a1, b);
  }
  /// Stores f(i, j, x) as bf16 into a row-major tile (two adjacent columns per 4-byte store).
  template <class F>
  __device__ __forceinline__ void store_bf16(bf16* tile, int ld, F f) const {
#pragma unroll
    for (int r = 0; r < kRegs; r += 2) {
      const int i = row(r), j = col(r);
      *reinterpret_cast<__nv_bfloat162*>(tile + i * ld + j) =
          __floats2bfloat162_rn(f(i, j, x[r]), f(i, j + 1, x[r + 1]));
    }
  }
};

/// out[i] (+)= sum_j x[i][j] of an accumulator-layout tile, minus sum_j x[j][i] with kMinusColumns
/// (a square tile: the row-minus-column sums of the gate gradient), in a fixed order
/// (deterministic). scratch: M * kWarpsN floats, M * (kWarpsN + kWarpsM) with kMinusColumns.
/// Every thread of the block must call it; it synchronises.
template <class Tiling, int NT, bool kMinusColumns = false>
__device__ void tile_row_sums(const float (&x)[Tiling::kRegs], float* scratch, float* out,
                              bool accumulate) {
  constexpr int M = Tiling::kWarpsM * 16;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* row_part = scratch;                        // [M][kWarpsN]
  float* col_part = scratch + M * Tiling::kWarpsN;  // [N][kWarpsM]
  float lo = 0.f, hi = 0.f;                         // rows c_row(lane, 0) and c_row(lane, 0) + 8
#pragma unroll
  for (int nt = 0; nt < Tiling::kNTiles; ++nt) {
    lo += x[4 * nt] + x[4 * nt + 1];
    hi += x[4 * nt + 2] + x[4 * nt + 3];
    if constexpr (kMinusColumns) {
      // Columns 8 nt + 2 t and + 1 of this lane: sum over its two rows, then over the 8 groups.
      float c0 = x[4 * nt] + x[4 * nt + 2], c1 = x[4 * nt + 1] + x[4 * nt + 3];
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) {
        c0 += __shfl_xor_sync(0xffffffffu, c0, o);
        c1 += __shfl_xor_sync(0xffffffffu, c1, o);
      }
      if (lane < 4) {
        const int j = Tiling::col(warp, lane, 4 * nt);
        col_part[j * Tiling::kWarpsM + warp % Tiling::kWarpsM] = c0;
        col_part[(j + 1) * Tiling::kWarpsM + warp % Tiling::kWarpsM] = c1;
      }
    }
  }
  lo += __shfl_xor_sync(0xffffffffu, lo, 1);  // the four lanes of a quad hold one row
  lo += __shfl_xor_sync(0xffffffffu, lo, 2);
  hi += __shfl_xor_sync(0xffffffffu, hi, 1);
  hi += __shfl_xor_sync(0xffffffffu, hi, 2);
  if (lane % 4 == 0) {
    row_part[Tiling::scratch_slot(Tiling::row(warp, lane, 0), warp)] = lo;
    row_part[Tiling::scratch_slot(Tiling::row(warp, lane, 2), warp)] = hi;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < M; i += NT) {
    float sum = 0.f;
    for (int w = 0; w < Tiling::kWarpsN; ++w) sum += row_part[i * Tiling::kWarpsN + w];
    if constexpr (kMinusColumns) {
      for (int w = 0; w < Tiling::kWarpsM; ++w) sum -= col_part[i * Tiling::kWarpsM + w];
    }
    out[i] = accumulate ? out[i] + sum : sum;
  }
  __syncthreads();
}
#endif  // __CUDACC__

}  // namespace hypnos::kernels::mma
