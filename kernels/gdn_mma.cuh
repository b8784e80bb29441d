// Tensor-core helpers of the gated-delta-rule kernels: the documented fragment layouts of
// mma.sync m16n8k8 tf32 (PTX ISA, "Matrix Fragments for mma.m16n8k8") and the inline-PTX wrappers.
// The layout functions are plain constexpr code so that a host test can check them without a GPU.
#pragma once

#if defined(__CUDACC__)
#define HYPNOS_HD __host__ __device__
#else
#define HYPNOS_HD
#endif

namespace hypnos::kernels::mma {

/// Where register r of lane `lane` sits in the tiles of one m16n8k8 tf32 MMA:
/// A is 16 x 8 (row-major, 4 registers), B is 8 x 8 (k x n, 2 registers), C/D is 16 x 8 (4).
/// groupID = lane / 4, threadID_in_group = lane % 4, as the PTX ISA names them.
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

/// Warp tiling of a [kRows, N] output whose rows are split among warps in slabs of
/// kWarpRows = 16 * kMTiles rows and whose N columns are kNTiles tiles of 8, each warp covering all
/// of them. The scan kernels use it for U, O (16 rows per warp) and the state (D / 4 rows per
/// warp).
template <int kMTiles, int kNTiles>
struct WarpTiling {
  static constexpr int kWarpRows = 16 * kMTiles;
  static constexpr HYPNOS_HD int row(int warp, int mt, int lane, int r) {
    return warp * kWarpRows + mt * 16 + M16N8K8::c_row(lane, r);
  }
  static constexpr HYPNOS_HD int col(int nt, int lane, int r) {
    return nt * 8 + M16N8K8::c_col(lane, r);
  }
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

#if defined(__CUDACC__)
/// The scan kernels' fp32 state slice held by one warp in accumulator layout (WarpTiling): rows
/// [warp * 16 kMTiles, +16 kMTiles) of the state, all 8 kNTiles columns of the slice.
template <int kMTiles, int kNTiles>
struct WarpStateTile {
  using Tiling = WarpTiling<kMTiles, kNTiles>;
  float x[kMTiles][kNTiles][4];
  /// f(d, j, x) for every element of this lane: state row d, slice column j, its register.
  template <class F>
  __device__ __forceinline__ void for_each(int warp, int lane, F f) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
        for (int r = 0; r < 4; ++r)
          f(Tiling::row(warp, mt, lane, r), Tiling::col(nt, lane, r), x[mt][nt][r]);
      }
    }
  }
};

/// fp32 -> tf32 with round-to-nearest (the MMA would otherwise truncate the low mantissa bits).
__device__ __forceinline__ unsigned to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

/// d += a b for one warp: a 16 x 8, b 8 x 8, d 16 x 8 (fp32 accumulate), layouts of M16N8K8.
__device__ __forceinline__ void mma_tf32(float (&d)[4], const unsigned (&a)[4],
                                         const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/// acc[nt] += A[row0 : row0 + 16, k0 : k0 + 8 * k_steps] B[.., 8 nt : 8 nt + 8] for one warp, with
/// element loaders a(i, k) and b(k, j) in tile coordinates (rows relative to row0). Four k-steps
/// are unrolled so that their operand loads (global memory in the scans) overlap.
template <int kNTiles, class FA, class FB>
__device__ __forceinline__ void warp_mma_tf32(float (&acc)[kNTiles][4], int lane, int k0,
                                              int k_steps, FA a, FB b) {
#pragma unroll 4
  for (int ks = 0; ks < k_steps; ++ks) {
    const int kb = k0 + ks * 8;
    unsigned af[4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
      af[r] = to_tf32(a(M16N8K8::a_row(lane, r), kb + M16N8K8::a_col(lane, r)));
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      unsigned bf[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        bf[r] = to_tf32(b(kb + M16N8K8::b_row(lane, r), nt * 8 + M16N8K8::b_col(lane, r)));
      }
      mma_tf32(acc[nt], af, bf);
    }
  }
}
/// warp_mma_tf32 with operands fetched in pairs: a_pair(i, k) returns A(i, k), A(i, k + 1) and
/// b_pair(k, j) returns B(k, j), B(k + 1, j) (k even) as float2s, one load instead of two where
/// the pair is adjacent in memory (the prep kernel's Q K^T: q rows from global memory, K rows from
/// shared memory). Inside each 8-wide k-step the k order is permuted, pi(t + 4 s) = 2 t + s for
/// t < 4, s < 2, the same for A and B, so the product is unchanged: a lane's two A registers of one
/// row (logical columns t and t + 4) are then the physical columns 2t and 2t + 1, and its two B
/// registers the rows 2t and 2t + 1 of one column. (The scans tried it too, with transposed shared
/// copies: faster at D = 64, slower at D = 128 on an H100, so they keep warp_mma_tf32.)
template <int kNTiles, class FA2, class FB2>
__device__ __forceinline__ void warp_mma_tf32_pairs(float (&acc)[kNTiles][4], int lane, int k0,
                                                    int k_steps, FA2 a_pair, FB2 b_pair) {
  const int g = lane / 4, t = lane % 4;  // M16N8K8's groupID and threadID_in_group
#pragma unroll 4
  for (int ks = 0; ks < k_steps; ++ks) {
    const int kb = k0 + ks * 8;
    const float2 top = a_pair(g, kb + 2 * t), bottom = a_pair(g + 8, kb + 2 * t);
    // A registers in M16N8K8 order: (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4) logically.
    const unsigned af[4] = {to_tf32(top.x), to_tf32(bottom.x), to_tf32(top.y), to_tf32(bottom.y)};
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      // B register r: logical row t + 4 r, physical row 2 t + r; column g.
      const float2 col = b_pair(kb + 2 * t, nt * 8 + g);
      const unsigned bf[2] = {to_tf32(col.x), to_tf32(col.y)};
      mma_tf32(acc[nt], af, bf);
    }
  }
}

/// The tensor-core counterpart of detail::Frag (same interface: x[kRegs], row(r), col(r), fill,
/// mma): an M x N block tile in mma accumulator layout, BlockTiling's warp split, tf32 operands.
/// kUnroll: k-steps unrolled in mma, so that the operand loads of several steps are in flight at
/// once (a measured choice per kernel: 4 helps the D = 64 chunk backward, hurts the D = 128 one).
template <int M, int N, int NT, int kUnroll = 4>
struct TcFrag {
  using Tiling = BlockTiling<M, N, NT>;
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
  /// x[i][j] += sum_{d < depth} a(i, d) * b(d, j); depth a multiple of 8; absolute coordinates.
  template <class FA, class FB>
  __device__ __forceinline__ void mma(int depth, FA a, FB b) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r0 = Tiling::row0(warp), c0 = Tiling::col0(warp);
#pragma unroll kUnroll
    for (int kb = 0; kb < depth; kb += 8) {
      unsigned af[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        af[r] = to_tf32(a(r0 + M16N8K8::a_row(lane, r), kb + M16N8K8::a_col(lane, r)));
      }
#pragma unroll
      for (int nt = 0; nt < Tiling::kNTiles; ++nt) {
        unsigned bf[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          bf[r] = to_tf32(b(kb + M16N8K8::b_row(lane, r), c0 + nt * 8 + M16N8K8::b_col(lane, r)));
        }
        mma_tf32(*reinterpret_cast<float(*)[4]>(x + 4 * nt), af, bf);
      }
    }
  }
  /// mma for the output rows below `rows` only: a warp whose 16-row slab starts at or past `rows`
  /// skips the product and keeps its registers. For products whose rows past the last token of a
  /// chunk are exact zeros anyway (their A rows are zero, or A is the identity there and B's rows
  /// are zero), so the result is bitwise the same with less work: a sleep window of 24 tokens skips
  /// half of every 64-row chunk product.
  template <class FA, class FB>
  __device__ __forceinline__ void mma_rows(int rows, int depth, FA a, FB b) {
    if (Tiling::row0(threadIdx.x / 32) >= rows) return;
    mma(depth, a, b);
  }
};

/// out[i] (+)= sum_j f.x[i][j] in a fixed order (deterministic). scratch: M * kWarpsN floats.
/// Every thread of the block must call it; it synchronises.
template <int M, int N, int NT, int kUnroll>
__device__ void row_sum(const TcFrag<M, N, NT, kUnroll>& f, float* scratch, float* out,
                        bool accumulate) {
  using Tiling = BlockTiling<M, N, NT>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float lo = 0.f, hi = 0.f;  // rows c_row(lane, 0) and c_row(lane, 0) + 8
#pragma unroll
  for (int nt = 0; nt < Tiling::kNTiles; ++nt) {
    lo += f.x[4 * nt] + f.x[4 * nt + 1];
    hi += f.x[4 * nt + 2] + f.x[4 * nt + 3];
  }
  // The four lanes of a quad hold one row's columns.
  lo += __shfl_xor_sync(0xffffffffu, lo, 1);
  lo += __shfl_xor_sync(0xffffffffu, lo, 2);
  hi += __shfl_xor_sync(0xffffffffu, hi, 1);
  hi += __shfl_xor_sync(0xffffffffu, hi, 2);
  if (lane % 4 == 0) {
    scratch[Tiling::scratch_slot(Tiling::row(warp, lane, 0), warp)] = lo;
    scratch[Tiling::scratch_slot(Tiling::row(warp, lane, 2), warp)] = hi;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < M; i += NT) {
    float s = 0.f;
    for (int w = 0; w < Tiling::kWarpsN; ++w) s += scratch[i * Tiling::kWarpsN + w];
    out[i] = accumulate ? out[i] + s : s;
  }
  __syncthreads();
}
#endif  // __CUDACC__

}  // namespace hypnos::kernels::mma
