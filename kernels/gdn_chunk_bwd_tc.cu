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

/// bf16 tile strides: 8 elements past the row, so rows start 16 bytes apart an odd number of
/// times and the eight rows of an ldmatrix block hit distinct banks.
template <int D>
inline constexpr int kLd = D + 8;
inline constexpr int kLc = kC + 8;
/// fp32 K K^T stride: the float2 reads of a half-warp's fragment hit distinct banks.
inline constexpr int kKkLd = kC + 8;

/// Shared memory of the kernel, in the order it is laid out. Fixed: the fp32 part, then K, Q, dU
/// (C x D) and X (C x C: scale (dP * R), then dA, then F). A union holds dO, U and one slab of
/// S and dS (all D rows, kSlab of the V columns, stride kLs) while the state products run, then
/// V, dW (C x D), A and M (C x C; later diag(beta) F).
template <int D>
struct Layout {
  static constexpr int kSlab = 64;  // state columns per slab: D = 128 is staged in two
  static constexpr int kLs = kSlab + 8;
  static constexpr int kRowTile = kC * kLd<D>, kSqTile = kC * kLc, kStateTile = D * kLs;
  static constexpr int kPhase1 = 2 * kRowTile + 2 * kStateTile;
  static constexpr int kPhase2 = 2 * kRowTile + 2 * kSqTile;
  static constexpr int kUnion = kPhase1 > kPhase2 ? kPhase1 : kPhase2;
  static constexpr int kScratch = 6 * kC;  // row-minus-column sums of a C x C tile
  static constexpr int kFloats = kC * kKkLd + detail::ChunkBwdScalars::kFloats + kScratch + 16;
  static constexpr int kHalves = 3 * kRowTile + kSqTile + kUnion;
  static constexpr size_t kBytes = sizeof(float) * kFloats + sizeof(bf16) * kHalves;
  static_assert(kFloats % 4 == 0 && kRowTile % 8 == 0 && kSqTile % 8 == 0 && kStateTile % 8 == 0,
                "every bf16 tile must start on 16 bytes");
};

/// Issues the copies of columns [v0, v0 + kSlab) of every row of S and dS (bf16 [K][V],
/// contiguous) into tiles (the caller commits and waits).
template <int D>
__device__ __forceinline__ void stage_states_async(bf16* s_st, bf16* s_dst, const bf16* st,
                                                   const bf16* dst, int v0) {
  using L = Layout<D>;
  detail::stage_bf16_async<D, L::kSlab, kThreads>(s_st, L::kLs, st + v0, D, D);
  detail::stage_bf16_async<D, L::kSlab, kThreads>(s_dst, L::kLs, dst + v0, D, D);
}

/// This thread's part of <S, dS> over a staged slab (after the barrier that publishes it).
template <int D>
__device__ __forceinline__ float slab_dot(const bf16* s_st, const bf16* s_dst) {
  using L = Layout<D>;
  constexpr int kPerRow = L::kSlab / 8;
  float dot = 0.f;
  for (int idx = threadIdx.x; idx < D * kPerRow; idx += kThreads) {
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
/// grouped, in the order Layout<D> lays the spaces out.
template <int D>
struct BwdTcTiles {
  // ---- fp32, every stage
  float* kk;                   // [C][kKkLd] K K^T
  detail::ChunkBwdScalars sc;  // G, gamma, decay, beta, the dG parts, e, dbeta, row sums
  float* red;                  // [6 C] reduction scratch
  float* blk;                  // [16] block-sum scratch
  // ---- bf16 [C][LD], every stage
  bf16 *k, *q, *du;
  // ---- one bf16 [C][LC] tile: scale (dP * R) until dq and dk have taken it, then dA until
  // M = A^T dA is formed, then F = dL * R
  bf16 *scaled_dp, *da, *f;
  // ---- the union, phase 1 (the state products): dO, U ([C][LD]) and one slab of S and dS
  // (all D rows, kSlab of the V columns: [D][kLs])
  bf16 *d_o, *u, *st, *dst;
  // ---- the union, phase 2: V, dW ([C][LD]), A ([C][LC]) and a [C][LC] tile that holds M = A^T dA,
  // then diag(beta) F
  bf16 *v, *dw, *a, *m, *beta_f;

  __device__ explicit BwdTcTiles(float* smem)
      : kk(smem),
        sc(kk + kC * kKkLd),
        red(sc.rs + kC),
        blk(red + Layout<D>::kScratch),
        k(reinterpret_cast<bf16*>(blk + 16)),
        q(k + Layout<D>::kRowTile),
        du(q + Layout<D>::kRowTile),
        scaled_dp(du + Layout<D>::kRowTile),
        da(scaled_dp),
        f(scaled_dp),
        d_o(scaled_dp + Layout<D>::kSqTile),
        u(d_o + Layout<D>::kRowTile),
        st(u + Layout<D>::kRowTile),
        dst(st + Layout<D>::kStateTile),
        v(d_o),
        dw(v + Layout<D>::kRowTile),
        a(dw + Layout<D>::kRowTile),
        m(a + Layout<D>::kSqTile),
        beta_f(m) {}
};

/// What the kernel reads from global memory (bf16): the chunk's rows of q, k, v, dO (row stride H
/// D), its U, dU ([C][D]) and P ([C][C]), S entering and dS leaving the chunk ([K][V]).
template <int D>
struct BwdTcInputs {
  int64_t row_stride;
  const bf16 *q, *k, *v, *d_o, *u, *du, *attn, *st, *dst;
  __device__ BwdTcInputs(const GdnParams& p, const detail::ChunkCta& c, int64_t tok)
      : row_stride(p.heads * D),
        q(static_cast<const bf16*>(p.q) + tok),
        k(static_cast<const bf16*>(p.k) + tok),
        v(static_cast<const bf16*>(p.v) + tok),
        d_o(static_cast<const bf16*>(p.grad_o) + tok),
        u(detail::as_bf16(p.u) + c.chunk * kC * D),
        du(detail::as_bf16(p.grad_u) + c.chunk * kC * D),
        attn(detail::as_bf16(p.attn) + c.chunk * kC * kC),
        st(detail::as_bf16(p.chunk_states) + c.chunk * D * D),
        dst(detail::as_bf16(p.grad_chunk_states) + c.chunk * D * D) {}
};

template <int D>
using RowFrag = mma::Bf16Frag<kC, D, kThreads>;  // C x D outputs
using SqFrag = mma::Bf16Frag<kC, kC, kThreads>;  // C x C outputs
using mma::rows_of;
using mma::transpose_of;

/// Rows [0, n_valid) of a C x D fragment into the chunk's rows of a [B, T, H, D] gradient.
template <int D>
__device__ __forceinline__ void store_token_rows(bf16* out, int64_t row_stride, int n_valid,
                                                 const RowFrag<D>& f) {
#pragma unroll
  for (int r = 0; r < RowFrag<D>::kRegs; r += 2) {
    const int i = f.row(r), j = f.col(r);
    if (i < n_valid) detail::store_bf16_pair(out + i * row_stride + j, f.x[r], f.x[r + 1]);
  }
}

/// Phase 1's copies, every one in flight at once (cp.async: no registers per load in flight): K,
/// Q, dO, dU, U and the first slab of S and dS; the gates meanwhile. Returns with this thread's
/// copies complete (the caller's barrier publishes them).
template <int D>
__device__ __forceinline__ void stage_phase1(const GdnParams& p, const detail::ChunkCta& c,
                                             const BwdTcInputs<D>& in, const BwdTcTiles<D>& t) {
  constexpr int LD = kLd<D>;
  detail::stage_bf16_async<kC, D, kThreads>(t.k, LD, in.k, in.row_stride, c.n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(t.q, LD, in.q, in.row_stride, c.n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(t.d_o, LD, in.d_o, in.row_stride, c.n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(t.du, LD, in.du, D, c.n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(t.u, LD, in.u, D, c.n_valid);
  stage_states_async<D>(t.st, t.dst, in.st, in.dst, 0);
  detail::cp_async_commit();
  const int tid = threadIdx.x;
  if (tid < kC) t.sc.load_gates(p, c.b, c.h, c.t0, c.n_valid, c.chunk, tid);
  detail::cp_async_wait<0>();
}

/// K K^T in fp32 (for L = strict_lower(diag(beta) K K^T * R) and dbeta).
template <int D>
__device__ __forceinline__ void kk_product(const BwdTcTiles<D>& t, int n_valid) {
  SqFrag kk;
  kk.fill(0.f);
  kk.mma_rows(n_valid, D, rows_of(t.k, kLd<D>), transpose_of(t.k, kLd<D>));
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; r += 2) {
    detail::store_pair(t.kk + kk.row(r) * kKkLd + kk.col(r), kk.x[r], kk.x[r + 1]);
  }
}

/// dP = lower_incl(dO U^T); dG (b) = rowsum(P * dP) - colsum(P * dP) into sc.dg; scaled_dp =
/// scale (dP * R). Synchronises.
template <int D>
__device__ __forceinline__ void dp_stage(const BwdTcInputs<D>& in, int n_valid, float scale,
                                         const BwdTcTiles<D>& t) {
  const bf16* attn = in.attn;
  SqFrag dp;
  dp.fill(0.f);
  dp.mma_rows(n_valid, D, rows_of(t.d_o, kLd<D>), transpose_of(t.u, kLd<D>));
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

/// dq = dO S^T, dw = dU S^T (dW's negative) and dk = U dS^T, summed over slabs of the states' V
/// columns (the B operand (v, j) is S[j][v], the slab's transpose); state_dot gathers this
/// thread's part of <S, dS>. Slab 0 is staged by stage_phase1 (and summed into state_dot by the
/// caller), the others here between barriers.
template <int D>
__device__ __forceinline__ void state_products(const BwdTcInputs<D>& in, const BwdTcTiles<D>& t,
                                               int n_valid, RowFrag<D>& dq, RowFrag<D>& dk,
                                               RowFrag<D>& dw, float& state_dot) {
  using L = Layout<D>;
  constexpr int LD = kLd<D>, SR = L::kSlab;
  dq.fill(0.f);
  dk.fill(0.f);
  dw.fill(0.f);
  for (int slab = 0; slab < D / SR; ++slab) {
    if (slab > 0) {
      __syncthreads();  // every warp is done with the previous slab
      stage_states_async<D>(t.st, t.dst, in.st, in.dst, slab * SR);
      detail::cp_async_commit();
      detail::cp_async_wait<0>();
      __syncthreads();
      state_dot += slab_dot<D>(t.st, t.dst);
    }
    dq.mma_rows_shared_b(dw, n_valid, SR, rows_of(t.d_o + slab * SR, LD),
                         rows_of(t.du + slab * SR, LD), transpose_of(t.st, L::kLs));
    dk.mma_rows(n_valid, SR, rows_of(t.u + slab * SR, LD), transpose_of(t.dst, L::kLs));
  }
}

/// Phase 2's stores and copies, into the union phase 1 has left: dW = -dw, and V and A by
/// cp.async (committed; the row sums of finish_state_products wait for them).
template <int D>
__device__ __forceinline__ void stage_phase2(const GdnParams& p, const detail::ChunkCta& c,
                                             const BwdTcInputs<D>& in, const BwdTcTiles<D>& t,
                                             const RowFrag<D>& dw) {
  dw.store_bf16(t.dw, kLd<D>, [](int, int, float x) { return -x; });
  detail::stage_bf16_async<kC, D, kThreads>(t.v, kLd<D>, in.v, in.row_stride, c.n_valid);
  detail::stage_bf16_async<kC, kC, kThreads>(t.a, kLc, detail::as_bf16(p.a_inv) + c.chunk * kC * kC,
                                             kC, kC);
  detail::cp_async_commit();
}

/// dq = scale diag(gamma) dO S^T: dG (a) += rowsum(q * dq). dk = diag(decay) U dS^T: e_i =
/// rowsum(k * dk). The sums synchronise, which also publishes phase 2's copies.
template <int D>
__device__ __forceinline__ void finish_state_products(const BwdTcTiles<D>& t, float scale,
                                                      RowFrag<D>& dq, RowFrag<D>& dk) {
  using RowTiling = typename RowFrag<D>::Tiling;
  constexpr int LD = kLd<D>;
  float x[RowFrag<D>::kRegs];
#pragma unroll
  for (int r = 0; r < RowFrag<D>::kRegs; ++r) {
    const int i = dq.row(r), j = dq.col(r);
    dq.x[r] *= scale * t.sc.gamma[i];
    dk.x[r] *= t.sc.decay[i];
    x[r] = dq.x[r] * __bfloat162float(t.q[i * LD + j]);
  }
  detail::cp_async_wait<0>();
  mma::tile_row_sums<RowTiling, kThreads>(x, t.red, t.sc.dg, /*accumulate=*/true);
#pragma unroll
  for (int r = 0; r < RowFrag<D>::kRegs; ++r) {
    x[r] = dk.x[r] * __bfloat162float(t.k[dk.row(r) * LD + dk.col(r)]);
  }
  mma::tile_row_sums<RowTiling, kThreads>(x, t.red, t.sc.e, /*accumulate=*/false);
}

/// dq += scale (dP * R) K, which makes dq final (written to grad_q); dk += scale (dP * R)^T Q.
template <int D>
__device__ __forceinline__ void scaled_dp_products(bf16* grad_q, const BwdTcInputs<D>& in,
                                                   int n_valid, int depth, const BwdTcTiles<D>& t,
                                                   RowFrag<D>& dq, RowFrag<D>& dk) {
  dq.mma_rows(n_valid, depth, rows_of(t.scaled_dp, kLc), rows_of(t.k, kLd<D>));
  store_token_rows<D>(grad_q, in.row_stride, n_valid, dq);
  dk.mma_rows(n_valid, depth, transpose_of(t.scaled_dp, kLc), rows_of(t.q, kLd<D>));
}

/// dA = dW Z^T + dU Y^T with Z = diag(beta gamma) K, Y = diag(beta) V, written over scaled_dp
/// once every warp is done with it (synchronises).
template <int D>
__device__ __forceinline__ void da_stage(const BwdTcTiles<D>& t, int n_valid) {
  SqFrag f1, f2;
  f1.fill(0.f);
  f2.fill(0.f);
  f1.mma_rows(n_valid, D, rows_of(t.dw, kLd<D>), transpose_of(t.k, kLd<D>));
  f2.mma_rows(n_valid, D, rows_of(t.du, kLd<D>), transpose_of(t.v, kLd<D>));
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; ++r) {
    const int j = f1.col(r);
    f1.x[r] = t.sc.beta[j] * (t.sc.gamma[j] * f1.x[r] + f2.x[r]);
  }
  __syncthreads();  // every warp is done reading scaled_dp
  f1.store_bf16(t.da, kLc, [](int, int, float x) { return x; });
}

/// M = A^T dA.
template <int D>
__device__ __forceinline__ void m_product(const BwdTcTiles<D>& t, int n_valid, int depth) {
  SqFrag m;
  m.fill(0.f);
  m.mma_rows(n_valid, depth, transpose_of(t.a, kLc), rows_of(t.da, kLc));
  m.store_bf16(t.m, kLc, [](int, int, float x) { return x; });
}

/// dL = strict_lower(-M A^T); dG (f) = rowsum(L * dL) - colsum(L * dL) into sc.dg; F = dL * R over
/// dA and diag(beta) F over M once every warp is done with them; dbeta = rowsum(F * K K^T) into
/// sc.db. Synchronises.
template <int D>
__device__ __forceinline__ void dl_stage(const BwdTcTiles<D>& t, int n_valid, int depth) {
  using SqTiling = typename SqFrag::Tiling;
  SqFrag dl;
  dl.fill(0.f);
  dl.mma_rows(n_valid, depth, rows_of(t.m, kLc), transpose_of(t.a, kLc));
  float ldl[SqFrag::kRegs], fkk[SqFrag::kRegs];
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; ++r) {
    const int i = dl.row(r), j = dl.col(r);
    const float kk = t.kk[i * kKkLd + j], ratio = t.sc.decay_ratio(i, j);
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
template <int D>
__device__ __forceinline__ void dz_stage(const BwdTcTiles<D>& t, int n_valid, int depth,
                                         RowFrag<D>& dk) {
  RowFrag<D> dz;
  dz.fill(0.f);
  dz.mma_rows(n_valid, depth, transpose_of(t.a, kLc), rows_of(t.dw, kLd<D>));
#pragma unroll
  for (int r = 0; r < RowFrag<D>::kRegs; ++r) {
    const int i = dz.row(r);
    dk.x[r] += t.sc.beta[i] * t.sc.gamma[i] * dz.x[r];
    dz.x[r] *= t.sc.gamma[i] * __bfloat162float(t.k[i * kLd<D> + dz.col(r)]);
  }
  mma::tile_row_sums<typename RowFrag<D>::Tiling, kThreads>(dz.x, t.red, t.sc.rs,
                                                            /*accumulate=*/false);
  const int tid = threadIdx.x;
  if (tid < kC) {
    t.sc.db[tid] += t.sc.rs[tid];
    t.sc.dg[tid] += t.sc.beta[tid] * t.sc.rs[tid];
  }
}

/// dk += diag(beta) F K + F^T diag(beta) K.
template <int D>
__device__ __forceinline__ void f_products(const BwdTcTiles<D>& t, int n_valid, int depth,
                                           RowFrag<D>& dk) {
  RowFrag<D> fk;
  fk.fill(0.f);
  fk.mma_rows(n_valid, depth, rows_of(t.f, kLc), rows_of(t.k, kLd<D>));
#pragma unroll
  for (int r = 0; r < RowFrag<D>::kRegs; ++r) dk.x[r] += t.sc.beta[fk.row(r)] * fk.x[r];
  dk.mma_rows(n_valid, depth, transpose_of(t.beta_f, kLc), rows_of(t.k, kLd<D>));
}

/// dY = A^T dU: dv = diag(beta) dY (written to grad_v); dbeta += rowsum(dY * V).
template <int D>
__device__ __forceinline__ void dy_stage(bf16* dv, const BwdTcInputs<D>& in, int n_valid, int depth,
                                         const BwdTcTiles<D>& t) {
  constexpr int LD = kLd<D>;
  const int64_t row_stride = in.row_stride;
  RowFrag<D> dy;
  dy.fill(0.f);
  dy.mma_rows(n_valid, depth, transpose_of(t.a, kLc), rows_of(t.du, LD));
#pragma unroll
  for (int r = 0; r < RowFrag<D>::kRegs; r += 2) {
    const int i = dy.row(r), j = dy.col(r);
    if (i < n_valid) {
      detail::store_bf16_pair(dv + i * row_stride + j, t.sc.beta[i] * dy.x[r],
                              t.sc.beta[i] * dy.x[r + 1]);
    }
    dy.x[r] *= __bfloat162float(t.v[i * LD + j]);
    dy.x[r + 1] *= __bfloat162float(t.v[i * LD + j + 1]);
  }
  mma::tile_row_sums<typename RowFrag<D>::Tiling, kThreads>(dy.x, t.red, t.sc.rs,
                                                            /*accumulate=*/false);
  const int tid = threadIdx.x;
  if (tid < kC) t.sc.db[tid] += t.sc.rs[tid];
}

// grid (NC, B*H), 256 threads (8 warps: C x D outputs as 4 x 2 warps of 16 x D/2, C x C outputs
// of 16 x 32). Every product has chunk rows as its output rows, and past the last token those rows
// are exact zeros (zero rows of K, Q, V, dO, U, dU; A's identity rows meet zero rows), so each is
// mma_rows: warps whose 16 rows lie past the tokens skip it (a 24-token window does 2 of 4), and
// products summed over chunk rows stop at the tokens rounded up to 16.
template <int D>
__global__ void __launch_bounds__(kThreads) gdn_chunk_bwd_tc_kernel(GdnParams p) {
  extern __shared__ float smem[];
  const BwdTcTiles<D> t(smem);
  const detail::ChunkCta c(p);
  const int n_valid = c.n_valid;
  const int depth = detail::row_depth<16>(n_valid);  // products summed over chunk rows
  const int64_t tok = detail::token_offset(p, c.b, c.t0, c.h, D);
  const BwdTcInputs<D> in(p, c, tok);

  // ---- phase 1: stage, K K^T, dP, and the products with the states
  stage_phase1<D>(p, c, in, t);
  __syncthreads();
  float state_dot = slab_dot<D>(t.st, t.dst);
  kk_product<D>(t, n_valid);
  dp_stage<D>(in, n_valid, p.scale, t);
  RowFrag<D> dq, dk, dw;
  state_products<D>(in, t, n_valid, dq, dk, dw, state_dot);
  __syncthreads();  // phase 1's union is free

  // ---- phase 2: the WY backward
  stage_phase2<D>(p, c, in, t, dw);
  finish_state_products<D>(t, p.scale, dq, dk);
  scaled_dp_products<D>(static_cast<bf16*>(p.grad_q) + tok, in, n_valid, depth, t, dq, dk);
  da_stage<D>(t, n_valid);
  __syncthreads();
  m_product<D>(t, n_valid, depth);
  __syncthreads();
  dl_stage<D>(t, n_valid, depth);
  dz_stage<D>(t, n_valid, depth, dk);
  f_products<D>(t, n_valid, depth, dk);
  dy_stage<D>(static_cast<bf16*>(p.grad_v) + tok, in, n_valid, depth, t);
  store_token_rows<D>(static_cast<bf16*>(p.grad_k) + tok, in.row_stride, n_valid, dk);
  state_dot = detail::block_sum<kThreads>(state_dot, t.blk);
  detail::finish_gate_grads(p, c.b, c.h, c.t0, n_valid, state_dot, t.sc);
}

template <int D>
cudaError_t launch(const GdnParams& p, cudaStream_t stream) {
  // All of L1 as shared memory: two CTAs of the D = 64 kernel (94 KB each) fit on an H100 SM.
  const cudaError_t err = detail::prefer_max_shared(gdn_chunk_bwd_tc_kernel<D>);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_bwd_tc_kernel<D>,
                                  dim3(unsigned(p.n_chunks()), unsigned(p.batch * p.heads)),
                                  kThreads, Layout<D>::kBytes, stream, p);
}

}  // namespace

namespace detail {
cudaError_t launch_gdn_chunk_bwd_tc(const GdnParams& p, cudaStream_t stream) {
  return with_head_dims(
      p, [&](auto dims) { return launch<square_dim<decltype(dims)>()>(p, stream); },
      TensorCoreHeadDims{});
}

size_t gdn_chunk_bwd_tc_smem_bytes(const GdnParams& p) {
  size_t bytes = 0;
  with_head_dims(
      p,
      [&](auto dims) {
        bytes = Layout<square_dim<decltype(dims)>()>::kBytes;
        return cudaSuccess;
      },
      TensorCoreHeadDims{});
  return bytes;
}
}  // namespace detail

}  // namespace hypnos::kernels
