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

// grid (NC, B*H), 256 threads (8 warps: C x D outputs as 4 x 2 warps of 16 x D/2, C x C outputs
// of 16 x 32). Every product has chunk rows as its output rows, and past the last token those rows
// are exact zeros (zero rows of K, Q, V, dO, U, dU; A's identity rows meet zero rows), so each is
// mma_rows: warps whose 16 rows lie past the tokens skip it (a 24-token window does 2 of 4), and
// products summed over chunk rows stop at the tokens rounded up to 16.
template <int D>
__global__ void __launch_bounds__(kThreads) gdn_chunk_bwd_tc_kernel(GdnParams p) {
  using L = Layout<D>;
  constexpr int LD = kLd<D>, LC = kLc, SR = L::kSlab, LS = L::kLs;
  using RowFrag = mma::Bf16Frag<kC, D, kThreads>;  // C x D outputs
  using SqFrag = mma::Bf16Frag<kC, kC, kThreads>;  // C x C outputs
  using RowTiling = typename RowFrag::Tiling;
  using SqTiling = typename SqFrag::Tiling;
  using mma::rows_of;
  using mma::transpose_of;
  extern __shared__ float smem[];
  float* s_kk = smem;  // [C][kKkLd] K K^T (fp32)
  const detail::ChunkBwdScalars sc(s_kk + kC * kKkLd);
  float* s_red = sc.rs + kC;           // [6 C] reduction scratch
  float* s_blk = s_red + L::kScratch;  // [16] block-sum scratch
  bf16* s_k = reinterpret_cast<bf16*>(s_blk + 16);
  bf16* s_q = s_k + L::kRowTile;
  bf16* s_du = s_q + L::kRowTile;
  bf16* s_x = s_du + L::kRowTile;  // scale (dP * R), then dA, then F = dL * R
  bf16* s_union = s_x + L::kSqTile;
  bf16* s_do = s_union;  // phase 1: the state products
  bf16* s_u = s_do + L::kRowTile;
  bf16* s_st = s_u + L::kRowTile;
  bf16* s_dst = s_st + L::kStateTile;
  bf16* s_v = s_union;  // phase 2: the rest
  bf16* s_dw = s_v + L::kRowTile;
  bf16* s_a = s_dw + L::kRowTile;
  bf16* s_m = s_a + L::kSqTile;  // A^T dA, then diag(beta) F

  const int n = blockIdx.x;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), t0 = int64_t(n) * kC, chunk = bh * n_chunks + n;
  const int n_valid = detail::valid_rows(p, t0);
  const int depth = detail::row_depth<16>(n_valid);  // products summed over chunk rows
  const int64_t row_stride = p.heads * D;
  const int64_t tok = detail::token_offset(p, b, t0, h, D);
  const bf16* q = static_cast<const bf16*>(p.q) + tok;
  const bf16* k = static_cast<const bf16*>(p.k) + tok;
  const bf16* v = static_cast<const bf16*>(p.v) + tok;
  const bf16* d_o = static_cast<const bf16*>(p.grad_o) + tok;
  const bf16* st = detail::as_bf16(p.chunk_states) + chunk * D * D;        // S: [K][V]
  const bf16* dst = detail::as_bf16(p.grad_chunk_states) + chunk * D * D;  // dS: [K][V]
  const bf16* attn = detail::as_bf16(p.attn) + chunk * kC * kC;
  const int tid = threadIdx.x;
  const float scale = p.scale;

  // ---- phase 1: stage, K K^T, dP, and the products with the states
  // Every copy of the phase in flight at once (cp.async: no registers per load in flight).
  detail::stage_bf16_async<kC, D, kThreads>(s_k, LD, k, row_stride, n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(s_q, LD, q, row_stride, n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(s_do, LD, d_o, row_stride, n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(s_du, LD, detail::as_bf16(p.grad_u) + chunk * kC * D, D,
                                            n_valid);
  detail::stage_bf16_async<kC, D, kThreads>(s_u, LD, detail::as_bf16(p.u) + chunk * kC * D, D,
                                            n_valid);
  stage_states_async<D>(s_st, s_dst, st, dst, 0);
  detail::cp_async_commit();
  if (tid < kC) sc.load_gates(p, b, h, t0, n_valid, chunk, tid);
  detail::cp_async_wait<0>();
  __syncthreads();
  float state_dot = slab_dot<D>(s_st, s_dst);
  auto decay_ratio = [&](int i, int j) { return i >= j ? __expf(sc.g[i] - sc.g[j]) : 0.f; };

  {  // K K^T (fp32, for L and dbeta)
    SqFrag kk;
    kk.fill(0.f);
    kk.mma_rows(n_valid, D, rows_of(s_k, LD), transpose_of(s_k, LD));
#pragma unroll
    for (int r = 0; r < SqFrag::kRegs; r += 2) {
      detail::store_pair(s_kk + kk.row(r) * kKkLd + kk.col(r), kk.x[r], kk.x[r + 1]);
    }
  }
  {  // dP = lower_incl(dO U^T); dG (b) = rowsum(P * dP) - colsum(P * dP); X = scale (dP * R)
    SqFrag dp;
    dp.fill(0.f);
    dp.mma_rows(n_valid, D, rows_of(s_do, LD), transpose_of(s_u, LD));
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
    dp.store_bf16(s_x, LC, [&](int i, int j, float x) { return scale * x * decay_ratio(i, j); });
    mma::tile_row_sums<SqTiling, kThreads, /*kMinusColumns=*/true>(pdp, s_red, sc.dg,
                                                                   /*accumulate=*/false);
  }
  // dq = dO S^T, dW = -dU S^T, dk = U dS^T, summed over slabs of the states' V columns: the B
  // operand (v, j) is S[j][v], the slab's transpose.
  RowFrag dq, dk, dw;
  dq.fill(0.f);
  dk.fill(0.f);
  dw.fill(0.f);
  for (int slab = 0; slab < D / SR; ++slab) {
    if (slab > 0) {
      __syncthreads();  // every warp is done with the previous slab
      stage_states_async<D>(s_st, s_dst, st, dst, slab * SR);
      detail::cp_async_commit();
      detail::cp_async_wait<0>();
      __syncthreads();
      state_dot += slab_dot<D>(s_st, s_dst);
    }
    dq.mma_rows_shared_b(dw, n_valid, SR, rows_of(s_do + slab * SR, LD),
                         rows_of(s_du + slab * SR, LD), transpose_of(s_st, LS));
    dk.mma_rows(n_valid, SR, rows_of(s_u + slab * SR, LD), transpose_of(s_dst, LS));
  }
  __syncthreads();  // phase 1's union is free

  // ---- phase 2
  dw.store_bf16(s_dw, LD, [](int, int, float x) { return -x; });
  detail::stage_bf16_async<kC, D, kThreads>(s_v, LD, v, row_stride, n_valid);
  detail::stage_bf16_async<kC, kC, kThreads>(s_a, LC, detail::as_bf16(p.a_inv) + chunk * kC * kC,
                                             kC, kC);
  detail::cp_async_commit();
  {
    // dq = scale diag(gamma) dO S^T: dG (a) += rowsum(q * dq). dk = diag(decay) U dS^T:
    // e_i = rowsum(k * dk). (The sums synchronise, which also publishes the copies above.)
    float t[RowFrag::kRegs];
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; ++r) {
      const int i = dq.row(r), j = dq.col(r);
      dq.x[r] *= scale * sc.gamma[i];
      dk.x[r] *= sc.decay[i];
      t[r] = dq.x[r] * __bfloat162float(s_q[i * LD + j]);
    }
    detail::cp_async_wait<0>();
    mma::tile_row_sums<RowTiling, kThreads>(t, s_red, sc.dg, /*accumulate=*/true);
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; ++r) {
      t[r] = dk.x[r] * __bfloat162float(s_k[dk.row(r) * LD + dk.col(r)]);
    }
    mma::tile_row_sums<RowTiling, kThreads>(t, s_red, sc.e, /*accumulate=*/false);
  }
  // dq += scale (dP * R) K: dq is final. dk += scale (dP * R)^T Q.
  dq.mma_rows(n_valid, depth, rows_of(s_x, LC), rows_of(s_k, LD));
  {
    bf16* dq_out = static_cast<bf16*>(p.grad_q) + tok;
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; r += 2) {
      const int i = dq.row(r), j = dq.col(r);
      if (i < n_valid) detail::store_bf16_pair(dq_out + i * row_stride + j, dq.x[r], dq.x[r + 1]);
    }
  }
  dk.mma_rows(n_valid, depth, transpose_of(s_x, LC), rows_of(s_q, LD));
  {  // dA = dW Z^T + dU Y^T with Z = diag(beta gamma) K, Y = diag(beta) V
    SqFrag f1, f2;
    f1.fill(0.f);
    f2.fill(0.f);
    f1.mma_rows(n_valid, D, rows_of(s_dw, LD), transpose_of(s_k, LD));
    f2.mma_rows(n_valid, D, rows_of(s_du, LD), transpose_of(s_v, LD));
#pragma unroll
    for (int r = 0; r < SqFrag::kRegs; ++r) {
      const int j = f1.col(r);
      f1.x[r] = sc.beta[j] * (sc.gamma[j] * f1.x[r] + f2.x[r]);
    }
    __syncthreads();  // every warp is done reading X
    f1.store_bf16(s_x, LC, [](int, int, float x) { return x; });
  }
  __syncthreads();
  {  // M = A^T dA
    SqFrag m;
    m.fill(0.f);
    m.mma_rows(n_valid, depth, transpose_of(s_a, LC), rows_of(s_x, LC));
    m.store_bf16(s_m, LC, [](int, int, float x) { return x; });
  }
  __syncthreads();
  {  // dL = strict_lower(-M A^T); dG (f) = rowsum(L * dL) - colsum(L * dL); F = dL * R
    SqFrag dl;
    dl.fill(0.f);
    dl.mma_rows(n_valid, depth, rows_of(s_m, LC), transpose_of(s_a, LC));
    float ldl[SqFrag::kRegs], fkk[SqFrag::kRegs];
#pragma unroll
    for (int r = 0; r < SqFrag::kRegs; ++r) {
      const int i = dl.row(r), j = dl.col(r);
      const float kk = s_kk[i * kKkLd + j], ratio = decay_ratio(i, j);
      dl.x[r] = j < i ? -dl.x[r] : 0.f;
      ldl[r] = sc.beta[i] * kk * ratio * dl.x[r];  // L_ij dL_ij (zero on and above the diagonal)
      dl.x[r] *= ratio;                            // F
      fkk[r] = dl.x[r] * kk;
    }
    __syncthreads();  // every warp is done reading dA and M
    dl.store_bf16(s_x, LC, [](int, int, float x) { return x; });
    dl.store_bf16(s_m, LC, [&](int i, int, float x) { return sc.beta[i] * x; });
    mma::tile_row_sums<SqTiling, kThreads, /*kMinusColumns=*/true>(ldl, s_red, sc.dg,
                                                                   /*accumulate=*/true);
    mma::tile_row_sums<SqTiling, kThreads>(fkk, s_red, sc.db, /*accumulate=*/false);
  }
  RowFrag tmp;
  {  // dZ = A^T dW: dk += diag(beta gamma) dZ; dbeta, dG (e) from rowsum(dZ * gamma K)
    tmp.fill(0.f);
    tmp.mma_rows(n_valid, depth, transpose_of(s_a, LC), rows_of(s_dw, LD));
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; ++r) {
      const int i = tmp.row(r);
      dk.x[r] += sc.beta[i] * sc.gamma[i] * tmp.x[r];
      tmp.x[r] *= sc.gamma[i] * __bfloat162float(s_k[i * LD + tmp.col(r)]);
    }
    mma::tile_row_sums<RowTiling, kThreads>(tmp.x, s_red, sc.rs, /*accumulate=*/false);
    if (tid < kC) {
      sc.db[tid] += sc.rs[tid];
      sc.dg[tid] += sc.beta[tid] * sc.rs[tid];
    }
  }
  {  // dk += diag(beta) F K + F^T diag(beta) K
    tmp.fill(0.f);
    tmp.mma_rows(n_valid, depth, rows_of(s_x, LC), rows_of(s_k, LD));
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; ++r) dk.x[r] += sc.beta[tmp.row(r)] * tmp.x[r];
    dk.mma_rows(n_valid, depth, transpose_of(s_m, LC), rows_of(s_k, LD));
  }
  {  // dY = A^T dU: dv = diag(beta) dY; dbeta += rowsum(dY * V)
    tmp.fill(0.f);
    tmp.mma_rows(n_valid, depth, transpose_of(s_a, LC), rows_of(s_du, LD));
    bf16* dv = static_cast<bf16*>(p.grad_v) + tok;
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; r += 2) {
      const int i = tmp.row(r), j = tmp.col(r);
      if (i < n_valid) {
        detail::store_bf16_pair(dv + i * row_stride + j, sc.beta[i] * tmp.x[r],
                                sc.beta[i] * tmp.x[r + 1]);
      }
      tmp.x[r] *= __bfloat162float(s_v[i * LD + j]);
      tmp.x[r + 1] *= __bfloat162float(s_v[i * LD + j + 1]);
    }
    mma::tile_row_sums<RowTiling, kThreads>(tmp.x, s_red, sc.rs, /*accumulate=*/false);
    if (tid < kC) sc.db[tid] += sc.rs[tid];
  }
  {
    bf16* dk_out = static_cast<bf16*>(p.grad_k) + tok;
#pragma unroll
    for (int r = 0; r < RowFrag::kRegs; r += 2) {
      const int i = dk.row(r), j = dk.col(r);
      if (i < n_valid) detail::store_bf16_pair(dk_out + i * row_stride + j, dk.x[r], dk.x[r + 1]);
    }
  }
  state_dot = detail::block_sum<kThreads>(state_dot, s_blk);
  detail::finish_gate_grads(p, b, h, t0, n_valid, state_dot, sc);
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
  return with_head_dims(p,
                        [&](auto dims) { return launch<square_dim<decltype(dims)>()>(p, stream); });
}
}  // namespace detail

}  // namespace hypnos::kernels
