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
/// of them. The scan kernels use it for U, O (16 rows per warp) and the state (D / 4 rows per warp).
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

#if defined(__CUDACC__)
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
/// element loaders a(i, k) and b(k, j) in tile coordinates (rows relative to row0).
template <int kNTiles, class FA, class FB>
__device__ __forceinline__ void warp_mma_tf32(float (&acc)[kNTiles][4], int lane, int k0,
                                              int k_steps, FA a, FB b) {
  for (int ks = 0; ks < k_steps; ++ks) {
    const int kb = k0 + ks * 8;
    unsigned af[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) af[r] = to_tf32(a(M16N8K8::a_row(lane, r), kb + M16N8K8::a_col(lane, r)));
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
#endif  // __CUDACC__

}  // namespace hypnos::kernels::mma
