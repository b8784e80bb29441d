// The chunk-parallel part of the gated-delta-rule backward (docs/delta_rule.md section 3) on tensor
// cores: one CTA per chunk computes dq, dk, the WY backward, dv, dbeta, dg and its in-chunk reverse
// cumsum from the saved U, A, states and the reverse scan's dU, dS, and writes each gradient once.
// Every operand is staged once in shared memory as bf16 (the inputs and the workspaces are bf16,
// GdnParams::bf16_workspaces) and fed to mma.sync m16n8k16 by ldmatrix, in either orientation,
// so transposed products need no copies; accumulation, masks, decays and row sums stay fp32.
// No atomics: every sum has a fixed order.
#include <cuda_bf16.h>

#include <cstdint>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_dispatch.cuh"
#include "gdn_mma.cuh"
#include "gdn_stage.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using bf16 = __nv_bfloat16;
using detail::kC;
using detail::kThreads;

inline constexpr int kLc = kC + 8;  // bf16 C x C tile stride
/// fp32 K K^T stride: the float2 reads of a half-warp's fragment hit distinct banks.
inline constexpr int kKkLd = kC + 8;
/// The most dynamic shared memory one block may ask for on an A100 (sm_80): the layout stages dO
/// and U whole where that fits it.
inline constexpr size_t kSm80SharedPerBlock = 166912;

/// Shared memory of the kernel, in the order it is laid out (bf16 strides 8 past the row, so rows
/// start 16 bytes apart an odd number of times and the eight rows of an ldmatrix block hit
/// distinct banks). Fixed: the fp32 part, then K, Q ([C][K]), dU ([C][V]) and X (C x C: scale
/// (dP * R), then dA, then F). A union holds dO, U and one slab of S and dS (all K rows, kSlab of
/// the V columns, stride kLs) while the state products run, then V ([C][V]), dW ([C][K]), A and M
/// (C x C; later diag(beta) F). dO and U are staged whole (the fewest copies) where the layout then
/// fits an A100's 163 KB or V = 64 is a single slab anyway, else slab by slab with the states
/// ([C][kLs] each; kStreamRows: V = 256, and (256, 128)): dP = dO U^T, dq = dO S^T and dk = U dS^T
/// all sum over V, so a slab's columns serve every product at once. That brings (64, 256) and
/// Jet-Nemotron's (96, 256) under an A100's limit and (256, 256) under an H100's (from 268 KB);
/// (128, 256) also recomputes K K^T (kRecomputeKk).
template <int K, int V>
struct Layout {
  static constexpr int kSlab = 64;  // state columns per slab: V / 64 slabs
  static constexpr int kSlabs = V / kSlab;
  static constexpr int kLdK = K + 8, kLdV = V + 8, kLs = kSlab + 8;
  static constexpr int kKRowTile = kC * kLdK, kVRowTile = kC * kLdV, kSqTile = kC * kLc;
  static constexpr int kStateTile = K * kLs;
  static constexpr int kScratch = 6 * kC;  // row-minus-column sums of a C x C tile
  static constexpr int kKkTile = kC * kKkLd;
  static constexpr int kFixedHalves = 2 * kKRowTile + kVRowTile + kSqTile;
  static constexpr int kPhase2 = kVRowTile + kKRowTile + 2 * kSqTile;
  /// Bytes of the layout whose phase-1 dO and U tiles hold `do_tile` halves each, with a K K^T
  /// tile of `kk_tile` floats.
  static constexpr size_t bytes_with(int do_tile, int kk_tile) {
    const int phase1 = 2 * do_tile + 2 * kStateTile;
    return sizeof(float) * (kk_tile + detail::ChunkBwdScalars::kFloats + kScratch + 16) +
           sizeof(bf16) * (kFixedHalves + (phase1 > kPhase2 ? phase1 : kPhase2));
  }
  /// Whether dO and U are staged slab by slab with the states (a single slab at V = 64: whole).
  static constexpr bool kStreamRows = kSlabs > 1 &&
                                      bytes_with(kVRowTile, kKkTile) > kSm80SharedPerBlock;
  /// Stride and size of the phase-1 dO and U tiles.
  static constexpr int kLdRows = kStreamRows ? kLs : kLdV;
  static constexpr int kRowsTile = kC * kLdRows;
  /// Whether K K^T is recomputed in registers where dl_stage needs it instead of kept in shared
  /// memory from phase 1 (one more C x C x K product): only where that brings the layout under an
  /// A100's limit, (128, 256) (169,536 bytes, else 151,104).
  static constexpr bool kRecomputeKk = bytes_with(kRowsTile, kKkTile) >
                                       kSm80SharedPerBlock&& bytes_with(kRowsTile,
                                                                        0) <= kSm80SharedPerBlock;
  static constexpr int kFloats =
      (kRecomputeKk ? 0 : kKkTile) + detail::ChunkBwdScalars::kFloats + kScratch + 16;
  static constexpr int kPhase1 = 2 * kRowsTile + 2 * kStateTile;
  static constexpr int kUnion = kPhase1 > kPhase2 ? kPhase1 : kPhase2;
  static constexpr int kHalves = kFixedHalves + kUnion;
  static constexpr size_t kBytes = sizeof(float) * kFloats + sizeof(bf16) * kHalves;
  /// CTAs per SM the registers must allow: as many as the shared memory does (2 at (64, 64) and
  /// (96, 64), 1 from (64, 128)'s 118 KB on).
  static constexpr int kMinBlocks = detail::min_blocks_for_smem(kBytes, kThreads);
  static_assert(kBytes == bytes_with(kRowsTile, kRecomputeKk ? 0 : kKkTile),
                "one count of the layout");
  static_assert(V % kSlab == 0, "the states are staged in whole slabs");
  static_assert(kFloats % 4 == 0 && kKRowTile % 8 == 0 && kVRowTile % 8 == 0 && kSqTile % 8 == 0 &&
                    kStateTile % 8 == 0 && kRowsTile % 8 == 0,
                "every bf16 tile must start on 16 bytes");
};

/// Issues the copies of columns [v0, v0 + kSlab) of every row of S and dS (bf16 [K][V],
/// contiguous) into tiles (the caller commits and waits).
template <int K, int V>
__device__ __forceinline__ void stage_states_async(bf16* s_st, bf16* s_dst, const bf16* st,
                                                   const bf16* dst, int v0) {
  using L = Layout<K, V>;
  detail::stage_bf16_async<K, L::kSlab, kThreads>(s_st, L::kLs, st + v0, V, K);
  detail::stage_bf16_async<K, L::kSlab, kThreads>(s_dst, L::kLs, dst + v0, V, K);
}

/// This thread's part of <S, dS> over a staged slab (after the barrier that publishes it).
template <int K, int V>
__device__ __forceinline__ float slab_dot(const bf16* s_st, const bf16* s_dst) {
  using L = Layout<K, V>;
  constexpr int kPerRow = L::kSlab / 8;
  float dot = 0.f;
  for (int idx = threadIdx.x; idx < K * kPerRow; idx += kThreads) {
    const int i = idx / kPerRow, c = (idx % kPerRow) * 8;
    float a[8], b[8];
    detail::unpack8(*reinterpret_cast<const uint4*>(s_st + i * L::kLs + c), a);
    detail::unpack8(*reinterpret_cast<const uint4*>(s_dst + i * L::kLs + c), b);
#pragma unroll
    for (int e = 0; e < 8; ++e) dot = fmaf(a[e], b[e], dot);
  }
  return dot;
}

/// The kernel's shared memory by what it holds, one name per meaning; names of one space are
/// grouped, in the order Layout<K, V> lays the spaces out.
template <int K, int V>
struct BwdTcTiles {
  using L = Layout<K, V>;
  // ---- fp32, every stage
  float* kk;                   // [C][kKkLd] K K^T (no space where kRecomputeKk)
  detail::ChunkBwdScalars sc;  // G, gamma, decay, beta, the dG parts, e, dbeta, row sums
  float* red;                  // [6 C] reduction scratch
  float* blk;                  // [16] block-sum scratch
  // ---- bf16 [C][K + 8] (k, q), [C][V + 8] (du), every stage
  bf16 *k, *q, *du;
  // ---- one bf16 [C][LC] tile: scale (dP * R) until dq and dk have taken it, then dA until
  // M = A^T dA is formed, then F = dL * R
  bf16 *scaled_dp, *da, *f;
  // ---- the union, phase 1 (the state products): dO, U ([C][kLdRows]: whole, or the slab's
  // columns) and one slab of S and dS (all K rows, kSlab of the V columns: [K][kLs])
  bf16 *d_o, *u, *st, *dst;
  // ---- the union, phase 2: V ([C][V + 8]), dW ([C][K + 8]), A ([C][LC]) and a [C][LC] tile
  // that holds M = A^T dA, then diag(beta) F
  bf16 *v, *dw, *a, *m, *beta_f;

  __device__ explicit BwdTcTiles(float* smem)
      : kk(smem),
        sc(kk + (L::kRecomputeKk ? 0 : L::kKkTile)),
        red(sc.rs + kC),
        blk(red + L::kScratch),
        k(reinterpret_cast<bf16*>(blk + 16)),
        q(k + L::kKRowTile),
        du(q + L::kKRowTile),
        scaled_dp(du + L::kVRowTile),
        da(scaled_dp),
        f(scaled_dp),
        d_o(scaled_dp + L::kSqTile),
        u(d_o + L::kRowsTile),
        st(u + L::kRowsTile),
        dst(st + L::kStateTile),
        v(d_o),
        dw(v + L::kVRowTile),
        a(dw + L::kKRowTile),
        m(a + L::kSqTile),
        beta_f(m) {}
};

/// What the kernel reads from global memory (bf16): the chunk's rows of q, k (row stride
/// heads_qk K), v, dO (row stride H V), its U, dU ([C][V]) and P ([C][C]), S entering and dS
/// leaving the chunk ([K][V]). row_stride_k is the gradients' dq, dk (per value head: H K).
template <int K, int V>
struct BwdTcInputs {
  int64_t row_stride_qk, row_stride_k, row_stride_v;
  const bf16 *q, *k, *v, *d_o, *u, *du, *attn, *st, *dst;
  __device__ BwdTcInputs(const GdnParams& p, const detail::ChunkCta& c, int64_t tok_qk,
                         int64_t tok_v)
      : row_stride_qk(p.qk_heads() * K),
        row_stride_k(p.heads * K),
        row_stride_v(p.heads * V),
        q(static_cast<const bf16*>(p.q) + tok_qk),
        k(static_cast<const bf16*>(p.k) + tok_qk),
        v(static_cast<const bf16*>(p.v) + tok_v),
        d_o(static_cast<const bf16*>(p.grad_o) + tok_v),
        u(detail::as_bf16(p.u) + c.chunk * kC * V),
        du(detail::as_bf16(p.grad_u) + c.chunk * kC * V),
        attn(detail::as_bf16(p.attn) + c.chunk * kC * kC),
        st(detail::as_bf16(p.chunk_states) + c.chunk * K * V),
        dst(detail::as_bf16(p.grad_chunk_states) + c.chunk * K * V) {}
};

template <int N>
using RowFrag = mma::Bf16Frag<kC, N, kThreads>;  // C x K or C x V outputs
using SqFrag = mma::Bf16Frag<kC, kC, kThreads>;  // C x C outputs
using mma::rows_of;
using mma::transpose_of;

/// Rows [0, n_valid) of a C x N fragment into the chunk's rows of a [B, T, H, N] gradient.
template <int N>
__device__ __forceinline__ void store_token_rows(bf16* out, int64_t row_stride, int n_valid,
                                                 const RowFrag<N>& f) {
#pragma unroll
  for (int r = 0; r < RowFrag<N>::kRegs; r += 2) {
    const int i = f.row(r), j = f.col(r);
    if (i < n_valid) detail::store_bf16_pair(out + i * row_stride + j, f.x[r], f.x[r + 1]);
  }
}

/// dO's and U's columns [v0, v0 + kSlab) into their phase-1 tiles (streamed layouts only; the
/// caller commits and waits).
template <int K, int V>
__device__ __forceinline__ void stage_row_slab_async(const BwdTcInputs<K, V>& in,
                                                     const BwdTcTiles<K, V>& t, int n_valid,
                                                     int v0) {
  using L = Layout<K, V>;
  detail::stage_bf16_async<kC, L::kSlab, kThreads>(t.d_o, L::kLs, in.d_o + v0, in.row_stride_v,
                                                   n_valid);
  detail::stage_bf16_async<kC, L::kSlab, kThreads>(t.u, L::kLs, in.u + v0, V, n_valid);
}

/// Phase 1's copies, every one in flight at once (cp.async: no registers per load in flight): K,
/// Q, dU, dO and U (whole, or their first slab) and the first slab of S and dS; the gates
/// meanwhile. Returns with this thread's copies complete (the caller's barrier publishes them).
template <int K, int V>
__device__ __forceinline__ void stage_phase1(const GdnParams& p, const detail::ChunkCta& c,
                                             const BwdTcInputs<K, V>& in,
                                             const BwdTcTiles<K, V>& t) {
  using L = Layout<K, V>;
  detail::stage_bf16_async<kC, K, kThreads>(t.k, L::kLdK, in.k, in.row_stride_qk, c.n_valid);
  detail::stage_bf16_async<kC, K, kThreads>(t.q, L::kLdK, in.q, in.row_stride_qk, c.n_valid);
  if constexpr (L::kStreamRows) {
    stage_row_slab_async<K, V>(in, t, c.n_valid, 0);
  } else {
    detail::stage_bf16_async<kC, V, kThreads>(t.d_o, L::kLdV, in.d_o, in.row_stride_v, c.n_valid);
  }
  detail::stage_bf16_async<kC, V, kThreads>(t.du, L::kLdV, in.du, V, c.n_valid);
  if constexpr (!L::kStreamRows) {
    detail::stage_bf16_async<kC, V, kThreads>(t.u, L::kLdV, in.u, V, c.n_valid);
  }
  stage_states_async<K, V>(t.st, t.dst, in.st, in.dst, 0);
  detail::cp_async_commit();
  const int tid = threadIdx.x;
  if (tid < kC) t.sc.load_gates(p, c, tid);
  detail::cp_async_wait<0>();
}

/// K K^T in fp32 (for L = strict_lower(diag(beta) K K^T * R) and dbeta), in registers.
template <int K, int V>
__device__ __forceinline__ SqFrag kk_fragment(const BwdTcTiles<K, V>& t, int n_valid) {
  constexpr int LD = Layout<K, V>::kLdK;
  SqFrag kk;
  kk.fill(0.f);
  kk.mma_rows(n_valid, K, rows_of(t.k, LD), transpose_of(t.k, LD));
  return kk;
}

/// ... into its tile, for dl_stage (layouts that keep it: !kRecomputeKk).
template <int K, int V>
__device__ __forceinline__ void kk_product(const BwdTcTiles<K, V>& t, int n_valid) {
  const SqFrag kk = kk_fragment<K, V>(t, n_valid);
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; r += 2) {
    detail::store_pair(t.kk + kk.row(r) * kKkLd + kk.col(r), kk.x[r], kk.x[r + 1]);
  }
}

/// From dO U^T (in dp): dP = lower_incl(dO U^T); dG (b) = rowsum(P * dP) - colsum(P * dP) into
/// sc.dg; scaled_dp = scale (dP * R). Synchronises.
template <int K, int V>
__device__ __forceinline__ void finish_dp(const BwdTcInputs<K, V>& in, float scale,
                                          const BwdTcTiles<K, V>& t, SqFrag& dp) {
  const bf16* attn = in.attn;
  float pdp[SqFrag::kRegs];
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; r += 2) {
    const int i = dp.row(r), j = dp.col(r);
    const float2 pr =
        __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(attn + i * kC + j));
    dp.x[r] = j <= i ? dp.x[r] : 0.f;
    dp.x[r + 1] = j + 1 <= i ? dp.x[r + 1] : 0.f;
    pdp[r] = pr.x * dp.x[r];
    pdp[r + 1] = pr.y * dp.x[r + 1];
  }
  dp.store_bf16(t.scaled_dp, kLc,
                [&](int i, int j, float x) { return scale * x * t.sc.decay_ratio(i, j); });
  mma::tile_row_sums<typename SqFrag::Tiling, kThreads, /*kMinusColumns=*/true>(
      pdp, t.red, t.sc.dg, /*accumulate=*/false);
}

/// dP from the whole dO and U (layouts that stage them whole), then finish_dp. Synchronises.
template <int K, int V>
__device__ __forceinline__ void dp_stage(const BwdTcInputs<K, V>& in, int n_valid, float scale,
                                         const BwdTcTiles<K, V>& t) {
  constexpr int LD = Layout<K, V>::kLdV;
  SqFrag dp;
  dp.fill(0.f);
  dp.mma_rows(n_valid, V, rows_of(t.d_o, LD), transpose_of(t.u, LD));
  finish_dp<K, V>(in, scale, t, dp);
}

/// dq = dO S^T, dw = dU S^T (dW's negative) and dk = U dS^T, summed over slabs of the states' V
/// columns (the B operand (v, j) is S[j][v], the slab's transpose), and with streamed dO and U
/// dp = dO U^T too; state_dot gathers this thread's part of <S, dS>. Slab 0 is staged by
/// stage_phase1 (and summed into state_dot by the caller), the others here between barriers.
template <int K, int V>
__device__ __forceinline__ void state_products(const BwdTcInputs<K, V>& in,
                                               const BwdTcTiles<K, V>& t, int n_valid,
                                               RowFrag<K>& dq, RowFrag<K>& dk, RowFrag<K>& dw,
                                               SqFrag& dp, float& state_dot) {
  using L = Layout<K, V>;
  constexpr int LR = L::kLdRows, SR = L::kSlab;
  dq.fill(0.f);
  dk.fill(0.f);
  dw.fill(0.f);
  if constexpr (L::kStreamRows) dp.fill(0.f);
  for (int slab = 0; slab < L::kSlabs; ++slab) {
    if (slab > 0) {
      __syncthreads();  // every warp is done with the previous slab
      stage_states_async<K, V>(t.st, t.dst, in.st, in.dst, slab * SR);
      if constexpr (L::kStreamRows) stage_row_slab_async<K, V>(in, t, n_valid, slab * SR);
      detail::cp_async_commit();
      detail::cp_async_wait<0>();
      __syncthreads();
      state_dot += slab_dot<K, V>(t.st, t.dst);
    }
    // dO's and U's columns of this slab: their own tiles when streamed, else within the whole
    const int rows_col0 = L::kStreamRows ? 0 : slab * SR;
    if constexpr (L::kStreamRows) {
      dp.mma_rows(n_valid, SR, rows_of(t.d_o, LR), transpose_of(t.u, LR));
    }
    dq.mma_rows_shared_b(dw, n_valid, SR, rows_of(t.d_o + rows_col0, LR),
                         rows_of(t.du + slab * SR, L::kLdV), transpose_of(t.st, L::kLs));
    dk.mma_rows(n_valid, SR, rows_of(t.u + rows_col0, LR), transpose_of(t.dst, L::kLs));
  }
}

/// Phase 2's stores and copies, into the union phase 1 has left: dW = -dw, and V and A by
/// cp.async (committed; the row sums of finish_state_products wait for them).
template <int K, int V>
__device__ __forceinline__ void stage_phase2(const GdnParams& p, const detail::ChunkCta& c,
                                             const BwdTcInputs<K, V>& in, const BwdTcTiles<K, V>& t,
                                             const RowFrag<K>& dw) {
  using L = Layout<K, V>;
  dw.store_bf16(t.dw, L::kLdK, [](int, int, float x) { return -x; });
  detail::stage_bf16_async<kC, V, kThreads>(t.v, L::kLdV, in.v, in.row_stride_v, c.n_valid);
  detail::stage_bf16_async<kC, kC, kThreads>(t.a, kLc, detail::as_bf16(p.a_inv) + c.chunk * kC * kC,
                                             kC, kC);
  detail::cp_async_commit();
}

/// dq = scale diag(gamma) dO S^T: dG (a) += rowsum(q * dq). dk = diag(decay) U dS^T: e_i =
/// rowsum(k * dk). The sums synchronise, which also publishes phase 2's copies.
template <int K, int V>
__device__ __forceinline__ void finish_state_products(const BwdTcTiles<K, V>& t, float scale,
                                                      RowFrag<K>& dq, RowFrag<K>& dk) {
  using RowTiling = typename RowFrag<K>::Tiling;
  constexpr int LD = Layout<K, V>::kLdK;
  float x[RowFrag<K>::kRegs];
#pragma unroll
  for (int r = 0; r < RowFrag<K>::kRegs; ++r) {
    const int i = dq.row(r), j = dq.col(r);
    dq.x[r] *= scale * t.sc.gamma[i];
    dk.x[r] *= t.sc.decay[i];
    x[r] = dq.x[r] * __bfloat162float(t.q[i * LD + j]);
  }
  detail::cp_async_wait<0>();
  mma::tile_row_sums<RowTiling, kThreads>(x, t.red, t.sc.dg, /*accumulate=*/true);
#pragma unroll
  for (int r = 0; r < RowFrag<K>::kRegs; ++r) {
    x[r] = dk.x[r] * __bfloat162float(t.k[dk.row(r) * LD + dk.col(r)]);
  }
  mma::tile_row_sums<RowTiling, kThreads>(x, t.red, t.sc.e, /*accumulate=*/false);
}

/// dq += scale (dP * R) K, which makes dq final (written to grad_q); dk += scale (dP * R)^T Q.
template <int K, int V>
__device__ __forceinline__ void scaled_dp_products(bf16* grad_q, const BwdTcInputs<K, V>& in,
                                                   int n_valid, int depth,
                                                   const BwdTcTiles<K, V>& t, RowFrag<K>& dq,
                                                   RowFrag<K>& dk) {
  constexpr int LD = Layout<K, V>::kLdK;
  dq.mma_rows(n_valid, depth, rows_of(t.scaled_dp, kLc), rows_of(t.k, LD));
  store_token_rows<K>(grad_q, in.row_stride_k, n_valid, dq);
  dk.mma_rows(n_valid, depth, transpose_of(t.scaled_dp, kLc), rows_of(t.q, LD));
}

/// dA = dW Z^T + dU Y^T with Z = diag(beta gamma) K, Y = diag(beta) V, written over scaled_dp
/// once every warp is done with it (synchronises).
template <int K, int V>
__device__ __forceinline__ void da_stage(const BwdTcTiles<K, V>& t, int n_valid) {
  using L = Layout<K, V>;
  SqFrag f1, f2;
  f1.fill(0.f);
  f2.fill(0.f);
  f1.mma_rows(n_valid, K, rows_of(t.dw, L::kLdK), transpose_of(t.k, L::kLdK));
  f2.mma_rows(n_valid, V, rows_of(t.du, L::kLdV), transpose_of(t.v, L::kLdV));
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; ++r) {
    const int j = f1.col(r);
    f1.x[r] = t.sc.beta[j] * (t.sc.gamma[j] * f1.x[r] + f2.x[r]);
  }
  __syncthreads();  // every warp is done reading scaled_dp
  f1.store_bf16(t.da, kLc, [](int, int, float x) { return x; });
}

/// M = A^T dA.
template <int K, int V>
__device__ __forceinline__ void m_product(const BwdTcTiles<K, V>& t, int n_valid, int depth) {
  SqFrag m;
  m.fill(0.f);
  m.mma_rows(n_valid, depth, transpose_of(t.a, kLc), rows_of(t.da, kLc));
  m.store_bf16(t.m, kLc, [](int, int, float x) { return x; });
}

/// dL = strict_lower(-M A^T); dG (f) = rowsum(L * dL) - colsum(L * dL) into sc.dg; F = dL * R over
/// dA and diag(beta) F over M once every warp is done with them; dbeta = rowsum(F * K K^T) into
/// sc.db. Synchronises.
template <int K, int V>
__device__ __forceinline__ void dl_stage(const BwdTcTiles<K, V>& t, int n_valid, int depth) {
  using SqTiling = typename SqFrag::Tiling;
  SqFrag dl;
  dl.fill(0.f);
  dl.mma_rows(n_valid, depth, rows_of(t.m, kLc), transpose_of(t.a, kLc));
  float ldl[SqFrag::kRegs], fkk[SqFrag::kRegs];
  SqFrag kk_again;  // K K^T, where the layout does not keep it (the same fragment layout as dl)
  if constexpr (Layout<K, V>::kRecomputeKk) kk_again = kk_fragment<K, V>(t, n_valid);
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; ++r) {
    const int i = dl.row(r), j = dl.col(r);
    const float kk = Layout<K, V>::kRecomputeKk ? kk_again.x[r] : t.kk[i * kKkLd + j];
    const float ratio = t.sc.decay_ratio(i, j);
    dl.x[r] = j < i ? -dl.x[r] : 0.f;
    ldl[r] = t.sc.beta[i] * kk * ratio * dl.x[r];  // L_ij dL_ij (zero on and above the diagonal)
    dl.x[r] *= ratio;                              // F
    fkk[r] = dl.x[r] * kk;
  }
  __syncthreads();  // every warp is done reading dA and M
  dl.store_bf16(t.f, kLc, [](int, int, float x) { return x; });
  dl.store_bf16(t.beta_f, kLc, [&](int i, int, float x) { return t.sc.beta[i] * x; });
  mma::tile_row_sums<SqTiling, kThreads, /*kMinusColumns=*/true>(ldl, t.red, t.sc.dg,
                                                                 /*accumulate=*/true);
  mma::tile_row_sums<SqTiling, kThreads>(fkk, t.red, t.sc.db, /*accumulate=*/false);
}

/// dZ = A^T dW: dk += diag(beta gamma) dZ; dbeta, dG (e) from rowsum(dZ * gamma K).
template <int K, int V>
__device__ __forceinline__ void dz_stage(const BwdTcTiles<K, V>& t, int n_valid, int depth,
                                         RowFrag<K>& dk) {
  constexpr int LD = Layout<K, V>::kLdK;
  RowFrag<K> dz;
  dz.fill(0.f);
  dz.mma_rows(n_valid, depth, transpose_of(t.a, kLc), rows_of(t.dw, LD));
#pragma unroll
  for (int r = 0; r < RowFrag<K>::kRegs; ++r) {
    const int i = dz.row(r);
    dk.x[r] += t.sc.beta[i] * t.sc.gamma[i] * dz.x[r];
    dz.x[r] *= t.sc.gamma[i] * __bfloat162float(t.k[i * LD + dz.col(r)]);
  }
  mma::tile_row_sums<typename RowFrag<K>::Tiling, kThreads>(dz.x, t.red, t.sc.rs,
                                                            /*accumulate=*/false);
  const int tid = threadIdx.x;
  if (tid < kC) {
    t.sc.db[tid] += t.sc.rs[tid];
    t.sc.dg[tid] += t.sc.beta[tid] * t.sc.rs[tid];
  }
}

/// dk += diag(beta) F K + F^T diag(beta) K.
template <int K, int V>
__device__ __forceinline__ void f_products(const BwdTcTiles<K, V>& t, int n_valid, int depth,
                                           RowFrag<K>& dk) {
  constexpr int LD = Layout<K, V>::kLdK;
  RowFrag<K> fk;
  fk.fill(0.f);
  fk.mma_rows(n_valid, depth, rows_of(t.f, kLc), rows_of(t.k, LD));
#pragma unroll
  for (int r = 0; r < RowFrag<K>::kRegs; ++r) dk.x[r] += t.sc.beta[fk.row(r)] * fk.x[r];
  dk.mma_rows(n_valid, depth, transpose_of(t.beta_f, kLc), rows_of(t.k, LD));
}

/// dY = A^T dU: dv = diag(beta) dY (written to grad_v); dbeta += rowsum(dY * V).
template <int K, int V>
__device__ __forceinline__ void dy_stage(bf16* dv, const BwdTcInputs<K, V>& in, int n_valid,
                                         int depth, const BwdTcTiles<K, V>& t) {
  constexpr int LD = Layout<K, V>::kLdV;
  const int64_t row_stride = in.row_stride_v;
  RowFrag<V> dy;
  dy.fill(0.f);
  dy.mma_rows(n_valid, depth, transpose_of(t.a, kLc), rows_of(t.du, LD));
#pragma unroll
  for (int r = 0; r < RowFrag<V>::kRegs; r += 2) {
    const int i = dy.row(r), j = dy.col(r);
    if (i < n_valid) {
      detail::store_bf16_pair(dv + i * row_stride + j, t.sc.beta[i] * dy.x[r],
                              t.sc.beta[i] * dy.x[r + 1]);
    }
    dy.x[r] *= __bfloat162float(t.v[i * LD + j]);
    dy.x[r + 1] *= __bfloat162float(t.v[i * LD + j + 1]);
  }
  mma::tile_row_sums<typename RowFrag<V>::Tiling, kThreads>(dy.x, t.red, t.sc.rs,
                                                            /*accumulate=*/false);
  const int tid = threadIdx.x;
  if (tid < kC) t.sc.db[tid] += t.sc.rs[tid];
}

// grid (NC, B*H), 256 threads (8 warps: C x K and C x V outputs as 4 x 2 warps of 16 x K/2 or
// 16 x V/2, C x C outputs of 16 x 32). Every product has chunk rows as its output rows, and past
// the last token those rows are exact zeros (zero rows of K, Q, V, dO, U, dU; A's identity rows
// meet zero rows), so each is mma_rows: warps whose 16 rows lie past the tokens skip it (a 24-token
// window does 2 of 4), and products summed over chunk rows stop at the tokens rounded up to 16.
template <int K, int V>
__global__ void __launch_bounds__(kThreads, Layout<K, V>::kMinBlocks)
    gdn_chunk_bwd_tc_kernel(GdnParams p) {
  extern __shared__ float smem[];
  const BwdTcTiles<K, V> t(smem);
  const detail::ChunkCta c(p);
  if (c.beyond) return;
  const int n_valid = c.n_valid;
  const int depth = detail::row_depth<16>(n_valid);  // products summed over chunk rows
  const int64_t tok_k = c.row * K;                   // dq and dk, per value head
  const int64_t tok_v = c.row * V;
  const BwdTcInputs<K, V> in(p, c, c.qk_row * K, tok_v);

  // ---- phase 1: stage, K K^T, dP, and the products with the states
  stage_phase1<K, V>(p, c, in, t);
  __syncthreads();
  float state_dot = slab_dot<K, V>(t.st, t.dst);
  if constexpr (!Layout<K, V>::kRecomputeKk) kk_product<K, V>(t, n_valid);
  if constexpr (!Layout<K, V>::kStreamRows) dp_stage<K, V>(in, n_valid, p.scale, t);
  RowFrag<K> dq, dk, dw;
  SqFrag dp;  // streamed dO and U: dO U^T, summed over the slabs with the state products
  state_products<K, V>(in, t, n_valid, dq, dk, dw, dp, state_dot);
  if constexpr (Layout<K, V>::kStreamRows) finish_dp<K, V>(in, p.scale, t, dp);
  __syncthreads();  // phase 1's union is free

  // ---- phase 2: the WY backward
  stage_phase2<K, V>(p, c, in, t, dw);
  finish_state_products<K, V>(t, p.scale, dq, dk);
  scaled_dp_products<K, V>(static_cast<bf16*>(p.grad_q) + tok_k, in, n_valid, depth, t, dq, dk);
  da_stage<K, V>(t, n_valid);
  __syncthreads();
  m_product<K, V>(t, n_valid, depth);
  __syncthreads();
  dl_stage<K, V>(t, n_valid, depth);
  dz_stage<K, V>(t, n_valid, depth, dk);
  f_products<K, V>(t, n_valid, depth, dk);
  dy_stage<K, V>(static_cast<bf16*>(p.grad_v) + tok_v, in, n_valid, depth, t);
  store_token_rows<K>(static_cast<bf16*>(p.grad_k) + tok_k, in.row_stride_k, n_valid, dk);
  state_dot = detail::block_sum<kThreads>(state_dot, t.blk);
  detail::finish_gate_grads(p, c, state_dot, t.sc);
}

template <int K, int V>
cudaError_t launch(const GdnParams& p, cudaStream_t stream) {
  // All of L1 as shared memory: two CTAs of the (64, 64) kernel (94 KB each) fit on an H100 SM.
  const cudaError_t err = detail::prefer_max_shared(gdn_chunk_bwd_tc_kernel<K, V>);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_bwd_tc_kernel<K, V>,
                                  dim3(unsigned(p.n_chunks()), unsigned(p.batch * p.heads)),
                                  kThreads, Layout<K, V>::kBytes, stream, p);
}

}  // namespace

namespace detail {
cudaError_t launch_gdn_chunk_bwd_tc(const GdnParams& p, cudaStream_t stream) {
  return with_head_dims(
      p,
      [&](auto dims) {
        using Dims = decltype(dims);
        return launch<Dims::kK, Dims::kV>(p, stream);
      },
      TensorCoreHeadDims{});
}

size_t gdn_chunk_bwd_tc_smem_bytes(const GdnParams& p) {
  return head_dims_bytes(
      p,
      [](auto dims) {
        using Dims = decltype(dims);
        return Layout<Dims::kK, Dims::kV>::kBytes;
      },
      TensorCoreHeadDims{});
}
}  // namespace detail

}  // namespace hypnos::kernels
