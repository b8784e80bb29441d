// The prep kernel of the chunked gated delta rule on bf16 tensor cores (docs/delta_rule.md section
// 2): per chunk, the cumsum of the gates, K K^T and Q K^T by mma.sync, the unit-lower inverse A =
// (I + L)^-1 in fp32, and W = A diag(beta gamma) K, Ut = A diag(beta) V with A split into bf16
// hi + lo. Launched by gdn_chunk_fwd for bf16 inputs, before the tensor-core scan.
#include <cuda_bf16.h>

#include <cstdint>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_dispatch.cuh"
#include "gdn_mma.cuh"
#include "gdn_prep.cuh"
#include "gdn_stage.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using detail::kC;
using detail::kThreads;
using detail::PrepGates;
using detail::store_pair;

/// s_a = (I + L)^-1 for the strictly lower s_l (both [C][LC], s_a holding I on entry), by 16 x 16
/// blocks: the four diagonal blocks by forward substitution (64 threads, a 16-long column each),
/// then the blocks below them level by level (distance i - j = 1, 2, 3 between block row and
/// column), A_ij = -A_ii sum_{k = j}^{i - 1} L_ik A_kj, which needs only blocks of smaller
/// distance. A serial 64-step substitution per column would be a chain of 2016 dependent FMAs on
/// 64 of the 256 threads; here the longest chain is about 150. Block rows past the tokens are
/// skipped: their L rows are zero, so their A blocks stay those of I. Ends synchronised.
template <int LC>
__device__ void invert_unit_lower(const float* s_l, float* s_a, int n_valid, int tid) {
  constexpr int kB = 16, kBlocks = kC / kB;
  static_assert(kThreads >= (kBlocks - 1) * kB * kB / 4, "64 threads per block of a level");
  static_assert(LC % 4 == 0, "rows are read as float4");
  const int live_blocks = (n_valid + kB - 1) / kB;
  if (tid < kBlocks * kB && tid / kB < live_blocks) {
    const int base = (tid / kB) * kB, c = tid % kB;
    float x[kB];
#pragma unroll
    for (int i = 0; i < kB; ++i) x[i] = i == c ? 1.f : 0.f;
#pragma unroll
    for (int i = 1; i < kB; ++i) {
      float sum = x[i];
#pragma unroll
      for (int j = 0; j < i; ++j) sum = fmaf(-s_l[(base + i) * LC + base + j], x[j], sum);
      x[i] = sum;
    }
#pragma unroll
    for (int i = 0; i < kB; ++i) s_a[(base + i) * LC + base + c] = x[i];
  }
  __syncthreads();
  // Each level's blocks (i, j = i - dist), i = dist .. live_blocks - 1, by 64 threads each: a
  // thread owns four rows r0 .. r0 + 3 and column c of its block, so each A_kj (then T) element
  // it loads serves four sums, and it reads the rows of L (then A_ii) four elements at a time.
  const int strip = tid / kB % (kB / 4), cc = tid % kB;
  for (int dist = 1; dist < live_blocks; ++dist) {
    const int e = tid / (kB * kB / 4), bi = dist + e, bj = bi - dist;
    const bool active = bi < live_blocks;
    const int r0 = bi * kB + 4 * strip, c = bj * kB + cc;
    // sum_{m in [m0, m1)} rows(r0 + q, m) * s_a[m][c], q = 0 .. 3, m1 - m0 a multiple of 4.
    auto strip_product = [&](const float* rows, int m0, int m1, float(&sum)[4]) {
#pragma unroll 4
      for (int m = m0; m < m1; m += 4) {
        float a[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) a[k] = s_a[(m + k) * LC + c];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float4 l = *reinterpret_cast<const float4*>(rows + (r0 + q) * LC + m);
          sum[q] = fmaf(l.x, a[0], fmaf(l.y, a[1], fmaf(l.z, a[2], fmaf(l.w, a[3], sum[q]))));
        }
      }
    };
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    // T_ij = sum_k L_ik A_kj, written in place of A_ij (zero until now).
    if (active) strip_product(s_l, bj * kB, bi * kB, t);
    __syncthreads();
    if (active) {
#pragma unroll
      for (int q = 0; q < 4; ++q) s_a[(r0 + q) * LC + c] = t[q];
    }
    __syncthreads();
    // A_ij = -A_ii T_ij: A_ii holds a unit diagonal and zeros above it, so whole rows of the block
    // serve as they are.
    float x[4] = {0.f, 0.f, 0.f, 0.f};
    if (active) strip_product(s_a, bi * kB, (bi + 1) * kB, x);
    __syncthreads();
    if (active) {
#pragma unroll
      for (int q = 0; q < 4; ++q) s_a[(r0 + q) * LC + c] = -x[q];
    }
    __syncthreads();
  }
}

/// Shared memory of the tensor-core prep kernel: fp32 A and L ([C][C + 8]: the float2 stores of a
/// half-warp's fragment hit distinct banks), G, beta, beta gamma; bf16 K, V, Q ([C][K + 8],
/// [C][V + 8], [C][K + 8]). After the inverse, L's space and then A's hold the bf16 splits hi + lo
/// of A diag(beta gamma) and A diag(beta) ([C][C + 8] each).
template <int K, int V>
struct PrepTcLayout {
  static constexpr int kLdK = K + 8, kLdV = V + 8, kLc = kC + 8;
  static constexpr size_t kBytes =
      sizeof(float) * (2 * kC * kLc + 3 * kC) + sizeof(__nv_bfloat16) * kC * (2 * kLdK + kLdV);
  static_assert(2 * sizeof(__nv_bfloat16) * kC * kLc == sizeof(float) * kC * kLc,
                "a hi and lo pair of tiles fills L's or A's space");
  /// CTAs per SM the registers must allow: as many as the shared memory does (3 of 64 KB at
  /// (64, 64), 2 of 88 KB at (128, 128), 1 of 120-136 KB at K = 256 with V >= 128),
  /// so that the compiler's register use never lowers occupancy.
  static constexpr int kMinBlocks = detail::min_blocks_for_smem(kBytes, kThreads);
};

/// The tensor-core prep kernel's shared memory by what it holds, one name per meaning, in the
/// order PrepTcLayout<K, V> lays the spaces out.
template <int K, int V>
struct PrepTcTiles {
  using bf16 = __nv_bfloat16;
  static constexpr int kLdK = PrepTcLayout<K, V>::kLdK, kLdV = PrepTcLayout<K, V>::kLdV,
                       kLc = PrepTcLayout<K, V>::kLc;
  // ---- fp32 [C][LC]: I, then A = (I + L)^-1 until every thread holds its pieces of it; then
  // bf16 [C][LC] x 2: A diag(beta), split hi + lo
  float* a;
  bf16 *u_hi, *u_lo;
  // ---- fp32 [C][LC]: L until the inverse; then bf16 [C][LC] x 2: A diag(beta gamma), hi + lo
  float* l;
  bf16 *w_hi, *w_lo;
  PrepGates gates;  // G, beta, beta exp(G)
  // ---- bf16 [C][K + 8], [C][V + 8], [C][K + 8]
  bf16 *k, *v, *q;

  __device__ explicit PrepTcTiles(float* smem)
      : a(smem),
        u_hi(reinterpret_cast<bf16*>(a)),
        u_lo(u_hi + kC * kLc),
        l(a + kC * kLc),
        w_hi(reinterpret_cast<bf16*>(l)),
        w_lo(w_hi + kC * kLc),
        gates(l + kC * kLc),
        k(reinterpret_cast<bf16*>(gates.zs + kC)),
        v(k + kC * kLdK),
        q(v + kC * kLdV) {}
};

/// L = strict_lower(diag(beta) K K^T * R) into its tile and P = scale (Q K^T * R) to attn (bf16),
/// by one pass of mma.sync over K^T shared by both products.
template <int K, int V>
__device__ __forceinline__ void kk_qk_tc_stage(const GdnParams& p, const detail::ChunkCta& c,
                                               const PrepTcTiles<K, V>& t) {
  using SqFrag = mma::Bf16Frag<kC, kC, kThreads>;
  constexpr int LD = PrepTcTiles<K, V>::kLdK, LC = PrepTcTiles<K, V>::kLc;
  SqFrag kk, qk;
  kk.fill(0.f);
  qk.fill(0.f);
  kk.mma_rows_shared_b(qk, c.n_valid, K, mma::rows_of(t.k, LD), mma::rows_of(t.q, LD),
                       mma::transpose_of(t.k, LD));
  const float *s_g = t.gates.g, *s_beta = t.gates.beta;
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; r += 2) {  // registers r, r + 1: columns j, j + 1 of row i
    const int i = kk.row(r), j = kk.col(r);
    const float decay0 = i >= j ? __expf(s_g[i] - s_g[j]) : 0.f;
    const float decay1 = i >= j + 1 ? __expf(s_g[i] - s_g[j + 1]) : 0.f;
    store_pair(t.l + i * LC + j, i > j ? s_beta[i] * kk.x[r] * decay0 : 0.f,
               i > j + 1 ? s_beta[i] * kk.x[r + 1] * decay1 : 0.f);
    detail::store_bf16_pair(detail::as_bf16(p.attn) + (c.chunk * kC + i) * kC + j,
                            p.scale * qk.x[r] * decay0, p.scale * qk.x[r + 1] * decay1);
  }
}

/// This thread's pieces of A: kPieces row pieces of 8 elements, held in registers while A's and
/// L's spaces are rewritten with the splits of A diag(.).
struct APieces {
  static constexpr int kPieces = kC * kC / 8 / kThreads;
  static_assert(kPieces * kThreads * 8 == kC * kC, "A splits into whole pieces per thread");
  float x[kPieces][8];
  /// Row and first column of piece n.
  __device__ __forceinline__ static int row(int n) {
    return (threadIdx.x + n * kThreads) / (kC / 8);
  }
  __device__ __forceinline__ static int col(int n) {
    return 8 * ((threadIdx.x + n * kThreads) % (kC / 8));
  }
};

/// One pass over A: this thread's pieces into registers, and A's bf16 copy to a_inv when a
/// backward follows (a_inv set).
template <int K, int V>
__device__ __forceinline__ APieces load_a_pieces(const GdnParams& p, int64_t chunk,
                                                 const PrepTcTiles<K, V>& t) {
  constexpr int LC = PrepTcTiles<K, V>::kLc;
  APieces a;
#pragma unroll
  for (int n = 0; n < APieces::kPieces; ++n) {
    const int i = APieces::row(n), j = APieces::col(n);
    *reinterpret_cast<float4*>(a.x[n]) = *reinterpret_cast<const float4*>(t.a + i * LC + j);
    *reinterpret_cast<float4*>(a.x[n] + 4) = *reinterpret_cast<const float4*>(t.a + i * LC + j + 4);
    if (p.a_inv != nullptr) {  // null: no backward follows, A is not needed again
      *reinterpret_cast<uint4*>(detail::as_bf16(p.a_inv) + (chunk * kC + i) * kC + j) =
          detail::pack8(a.x[n]);
    }
  }
  return a;
}

/// A diag(beta gamma) into w_hi + w_lo (L's space) and A diag(beta) into u_hi + u_lo (A's space),
/// each split into bf16 hi = bf16(x) and lo = bf16(x - hi); once every thread holds its pieces.
template <int K, int V>
__device__ __forceinline__ void split_a_stage(const APieces& a, const PrepTcTiles<K, V>& t) {
  using bf16 = __nv_bfloat16;
  constexpr int LC = PrepTcTiles<K, V>::kLc;
#pragma unroll
  for (int n = 0; n < APieces::kPieces; ++n) {
    const int i = APieces::row(n), j = APieces::col(n);
    auto split = [&](const float* scale, bf16* hi, bf16* lo) {
      float x[8], rest[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = a.x[n][e] * scale[j + e];
      const uint4 hi_bits = detail::pack8(x);
      float hi_x[8];
      detail::unpack8(hi_bits, hi_x);
#pragma unroll
      for (int e = 0; e < 8; ++e) rest[e] = x[e] - hi_x[e];
      *reinterpret_cast<uint4*>(hi + i * LC + j) = hi_bits;
      *reinterpret_cast<uint4*>(lo + i * LC + j) = detail::pack8(rest);
    };
    split(t.gates.zs, t.w_hi, t.w_lo);
    split(t.gates.beta, t.u_hi, t.u_lo);
  }
}

/// out = (hi + lo) X (X bf16 [C][N] at row stride LDX; out [C][N] of the chunk): W = A diag(beta
/// gamma) K (N = K), Ut = A diag(beta) V (N = V). Rows of A past the tokens are identity rows
/// against zero rows of X and zero scales: zero rows. At most 128 columns at a time (N = 256 in
/// two passes: a warp's 16 x 128 accumulators are 64 registers, which with the two A fragments
/// would spill at the 128 registers two CTAs per SM allow).
template <int N, int LDX>
__device__ __forceinline__ void split_product(const __nv_bfloat16* hi, const __nv_bfloat16* lo,
                                              const __nv_bfloat16* x, int n_valid, int depth,
                                              int64_t chunk, void* out) {
  constexpr int kBlockN = N < 128 ? N : 128;
  using RowFrag = mma::Bf16Frag<kC, kBlockN, kThreads>;
  constexpr int LC = kC + 8;  // PrepTcLayout's kLc
#pragma unroll 1
  for (int c0 = 0; c0 < N; c0 += kBlockN) {
    RowFrag f;
    f.fill(0.f);
    f.mma_rows_shared_b(f, n_valid, depth, mma::rows_of(hi, LC), mma::rows_of(lo, LC),
                        mma::rows_of(x + c0, LDX));
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; r += 2) {
      detail::store_bf16_pair(detail::as_bf16(out) + (chunk * kC + f.row(r)) * N + c0 + f.col(r),
                              f.x[r], f.x[r + 1]);
    }
  }
}

// grid (NC, B*H), 256 threads. The prep kernel on bf16 tensor cores: K K^T and Q K^T by mma.sync
// m16n8k16 from bf16 tiles (exact inputs, fp32 accumulation); the inverse A = (I + L)^-1 in fp32
// by 16 x 16 blocks; W = A diag(beta gamma) K and Ut = A diag(beta) V with A diag(.) split into
// bf16 hi + lo (two MMAs: about 16 mantissa bits, where one bf16 operand would round A to 8).
// Writes W, Ut, P and A in bf16 (GdnParams::bf16_workspaces: W, P and A are the other kernels'
// bf16 MMA operands; Ut enters U = Ut - W S, whose result is rounded to bf16 as the next operand,
// as fla stores it) and g_cum in fp32.
template <int K, int V>
__global__ void __launch_bounds__(kThreads, PrepTcLayout<K, V>::kMinBlocks)
    gdn_chunk_prep_tc_kernel(GdnParams p) {
  using bf16 = __nv_bfloat16;
  using Tiles = PrepTcTiles<K, V>;
  extern __shared__ float smem[];
  const Tiles t(smem);
  const detail::ChunkCta c(p);
  if (c.beyond) return;
  const int n_valid = c.n_valid;
  const int depth = detail::row_depth<16>(n_valid);
  const int64_t tok_k = c.qk_row * K;  // q and k
  const int64_t tok_v = c.row * V;

  detail::stage_bf16<kC, K, kThreads>(t.k, Tiles::kLdK, static_cast<const bf16*>(p.k) + tok_k,
                                      p.qk_heads() * K, n_valid);
  detail::stage_bf16<kC, V, kThreads>(t.v, Tiles::kLdV, static_cast<const bf16*>(p.v) + tok_v,
                                      p.heads * V, n_valid);
  detail::stage_bf16<kC, K, kThreads>(t.q, Tiles::kLdK, static_cast<const bf16*>(p.q) + tok_k,
                                      p.qk_heads() * K, n_valid);
  detail::fill_identity<Tiles::kLc>(t.a);
  detail::load_gates_and_cumsum(p, c, t.gates);  // synchronises
  kk_qk_tc_stage<K, V>(p, c, t);
  __syncthreads();
  invert_unit_lower<Tiles::kLc>(t.l, t.a, n_valid, threadIdx.x);  // ends synchronised
  const APieces a = load_a_pieces<K, V>(p, c.chunk, t);
  __syncthreads();  // every thread holds its pieces: A's space is free
  split_a_stage<K, V>(a, t);
  __syncthreads();
  split_product<K, Tiles::kLdK>(t.w_hi, t.w_lo, t.k, n_valid, depth, c.chunk, p.w);        // W
  split_product<V, Tiles::kLdV>(t.u_hi, t.u_lo, t.v, n_valid, depth, c.chunk, p.u_tilde);  // Ut
}

template <int K, int V>
cudaError_t launch(const GdnParams& p, cudaStream_t stream) {
  return detail::launch_with_smem(gdn_chunk_prep_tc_kernel<K, V>,
                                  dim3(unsigned(p.n_chunks()), unsigned(p.batch * p.heads)),
                                  kThreads, PrepTcLayout<K, V>::kBytes, stream, p);
}

}  // namespace

namespace detail {
cudaError_t launch_gdn_chunk_prep_tc(const GdnParams& p, cudaStream_t stream) {
  return with_head_dims(
      p,
      [&](auto dims) {
        using Dims = decltype(dims);
        return launch<Dims::kK, Dims::kV>(p, stream);
      },
      TensorCoreHeadDims{});
}

size_t gdn_chunk_prep_tc_smem_bytes(const GdnParams& p) {
  return head_dims_bytes(
      p,
      [](auto dims) {
        using Dims = decltype(dims);
        return PrepTcLayout<Dims::kK, Dims::kV>::kBytes;
      },
      TensorCoreHeadDims{});
}
}  // namespace detail

}  // namespace hypnos::kernels
