// Backward of the chunked gated delta rule (docs/delta_rule.md section 3): a reverse scan over
// chunks per (sequence, head, V-slice) carrying dS, then one chunk-parallel kernel that does every
// chunk-local gradient (dq, dk, the WY backward, dv, dbeta, dg and its in-chunk reverse cumsum) and
// writes each final gradient once. No atomics: every sum has a fixed order, so two runs are bitwise
// equal. This file holds the entry point and the CUDA-core (fp32) kernels; bf16 inputs take the
// tensor-core reverse scan (gdn_chunk_scan_tc.cu) and chunk kernel (gdn_chunk_bwd_tc.cu).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_dispatch.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using detail::Frag;
using detail::kC;
using detail::kThreads;
using detail::load;
using detail::row_depth;
using detail::row_sum;
using detail::valid_rows;

template <int D, int BV>
constexpr size_t bwd_scan_smem_bytes() {
  return sizeof(float) * (D * (BV + 1) + kC * (BV + 1) + 2 * kC);
}

// grid (D / BV, B*H). Reverse over chunks: dU = P^T dO + diag(decay) K dS;
// dS <- gamma_C dS + scale (diag(gamma) Q)^T dO - W^T dU. Stores dS (leaving each chunk) and dU.
template <typename T, int D, int BV>
__global__ void __launch_bounds__(kThreads) gdn_chunk_bwd_scan_kernel(GdnParams p) {
  constexpr int LS = BV + 1;
  extern __shared__ float smem[];
  float* s_ds = smem;               // [D][LS]
  float* s_du = s_ds + D * LS;      // [C][LS]
  float* s_gamma = s_du + kC * LS;  // [C]
  float* s_decay = s_gamma + kC;    // [C]

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), row_stride = p.heads * D;
  const int tid = threadIdx.x;

  for (int idx = tid; idx < D * BV; idx += kThreads) {
    const int d = idx / BV, j = idx % BV;
    s_ds[d * LS + j] = p.grad_final_state ? p.grad_final_state[(bh * D + d) * D + v0 + j] : 0.f;
  }
  __syncthreads();  // the chunk loop reads the whole slice, written by other threads
  for (int64_t n = n_chunks - 1; n >= 0; --n) {
    const int64_t t0 = n * kC, chunk = bh * n_chunks + n;
    const int n_valid = valid_rows(p, t0);
    const T* q = static_cast<const T*>(p.q) + detail::token_offset(p, b, t0, h, D);
    const T* k = static_cast<const T*>(p.k) + detail::token_offset(p, b, t0, h, D);
    const T* d_o = static_cast<const T*>(p.grad_o) + detail::token_offset(p, b, t0, h, D);
    const float* w = detail::as_f32(p.w) + chunk * kC * D;
    const float* attn = detail::as_f32(p.attn) + chunk * kC * kC;
    if (tid < kC) detail::store_chunk_decays(p, chunk, tid, s_gamma, s_decay);
    {
      float* dst = detail::as_f32(p.grad_chunk_states) + chunk * D * D;
      for (int idx = tid; idx < D * BV; idx += kThreads) {
        const int d = idx / BV, j = idx % BV;
        dst[d * D + v0 + j] = s_ds[d * LS + j];
      }
    }
    __syncthreads();
    auto grad_out = [&](int i, int j) {
      return i < n_valid ? load(d_o + i * row_stride + v0 + j) : 0.f;
    };
    Frag<kC, BV> du, kds;
    du.fill(0.f);
    kds.fill(0.f);
    du.mma(
        kC, [&](int i, int m) { return attn[m * kC + i]; }, grad_out);
    kds.mma(
        D, [&](int i, int d) { return i < n_valid ? load(k + i * row_stride + d) : 0.f; },
        [&](int d, int j) { return s_ds[d * LS + j]; });
#pragma unroll
    for (int r = 0; r < du.kRegs; ++r) {
      const float x = du.x[r] + s_decay[du.row(r)] * kds.x[r];
      s_du[du.row(r) * LS + du.col()] = x;
      detail::as_f32(p.grad_u)[(chunk * kC + du.row(r)) * D + v0 + du.col()] = x;
    }
    __syncthreads();
    Frag<D, BV> ds;
    const float gamma_last = s_gamma[kC - 1];
#pragma unroll
    for (int r = 0; r < ds.kRegs; ++r) ds.x[r] = gamma_last * s_ds[ds.row(r) * LS + ds.col()];
    ds.mma(
        kC,
        [&](int d, int i) {
          return i < n_valid ? p.scale * s_gamma[i] * load(q + i * row_stride + d) : 0.f;
        },
        grad_out);
    ds.mma(
        kC, [&](int d, int i) { return -w[i * D + d]; },
        [&](int i, int j) { return s_du[i * LS + j]; });
    __syncthreads();
#pragma unroll
    for (int r = 0; r < ds.kRegs; ++r) s_ds[ds.row(r) * LS + ds.col()] = ds.x[r];
    __syncthreads();
  }
  if (p.grad_initial_state) {
    for (int idx = tid; idx < D * BV; idx += kThreads) {
      const int d = idx / BV, j = idx % BV;
      p.grad_initial_state[(bh * D + d) * D + v0 + j] = s_ds[d * LS + j];
    }
  }
}

/// Strides of the CUDA-core chunk kernel's fp32 tiles: odd, so column walks hit distinct banks.
template <int D>
inline constexpr int kChunkLd = D + 1;
inline constexpr int kChunkLc = kC + 1;

template <int D>
constexpr size_t bwd_chunk_smem_bytes() {
  return sizeof(float) * (2 * kC * kChunkLd<D> + 4 * kC * kChunkLc +
                          detail::ChunkBwdScalars::kFloats + kC * (D / 32) + 16);
}

/// The chunk kernel's shared memory by what it holds, one name per meaning; names of one space are
/// grouped, in the order the spaces are laid out (bwd_chunk_smem_bytes).
template <int D>
struct BwdTiles {
  float *k, *dw;  // [C][LD] K, dW = -dU S^T
  float *kk, *a;  // [C][LC] K K^T, A = (I + L)^-1
  // ---- one [C][LC] tile: dP, then scale (dP * R) until dq and dk have taken it, then dA, then dL,
  // then F = dL * R
  float *dp, *scaled_dp, *da, *dl, *f;
  float* m;  // [C][LC] M = A^T dA
  detail::ChunkBwdScalars sc;
  float* red;  // [C * D / 32] row-sum scratch
  float* blk;  // [16] block-sum scratch

  __device__ explicit BwdTiles(float* smem)
      : k(smem),
        dw(k + kC * kChunkLd<D>),
        kk(dw + kC * kChunkLd<D>),
        a(kk + kC * kChunkLc),
        dp(a + kC * kChunkLc),
        scaled_dp(dp),
        da(dp),
        dl(dp),
        f(dp),
        m(dp + kC * kChunkLc),
        sc(m + kC * kChunkLc),
        red(sc.rs + kC),
        blk(red + kC * (D / 32)) {}
};

/// Element (i, j) of the chunk's rows of a [B, T, H, D] input, zero past the tokens.
template <typename T>
struct ChunkRows {
  const T* x;
  int64_t stride;
  int n_valid;
  __device__ __forceinline__ float operator()(int i, int j) const {
    return i < n_valid ? load(x + i * stride + j) : 0.f;
  }
};

/// What the chunk kernel reads from global memory: the chunk's rows of q, k, v, dO, and its U, dU
/// ([C][D]), S entering and dS leaving the chunk ([K][V]).
template <typename T, int D>
struct BwdInputs {
  ChunkRows<T> q, k, v, d_o;
  const float *u, *du, *st, *dst;
  __device__ BwdInputs(const GdnParams& p, const detail::ChunkCta& c, int64_t tok)
      : q{static_cast<const T*>(p.q) + tok, p.heads * D, c.n_valid},
        k{static_cast<const T*>(p.k) + tok, p.heads * D, c.n_valid},
        v{static_cast<const T*>(p.v) + tok, p.heads * D, c.n_valid},
        d_o{static_cast<const T*>(p.grad_o) + tok, p.heads * D, c.n_valid},
        u(detail::as_f32(p.u) + c.chunk * kC * D),
        du(detail::as_f32(p.grad_u) + c.chunk * kC * D),
        st(detail::as_f32(p.chunk_states) + c.chunk * D * D),
        dst(detail::as_f32(p.grad_chunk_states) + c.chunk * D * D) {}
};

template <int D>
using RowFrag = Frag<kC, D>;  // C x D outputs
using SqFrag = Frag<kC, kC>;  // C x C outputs

/// K ([C][LD]), A ([C][LC]) and the gates into shared memory; dbeta starts at zero.
template <typename T, int D>
__device__ __forceinline__ void load_chunk(const GdnParams& p, const detail::ChunkCta& c,
                                           const BwdInputs<T, D>& in, const BwdTiles<D>& t) {
  constexpr int LD = kChunkLd<D>, LC = kChunkLc;
  const int tid = threadIdx.x;
  for (int idx = tid; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    t.k[i * LD + d] = in.k(i, d);
  }
  for (int idx = tid; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    t.a[i * LC + j] = detail::as_f32(p.a_inv)[c.chunk * kC * kC + idx];
  }
  if (tid < kC) {
    t.sc.load_gates(p, c.b, c.h, c.t0, c.n_valid, c.chunk, tid);
    t.sc.db[tid] = 0.f;
  }
}

/// K K^T.
template <int D>
__device__ __forceinline__ void kk_product(const BwdTiles<D>& t, int n_valid) {
  SqFrag kk;
  kk.fill(0.f);
  kk.mma_rows(
      n_valid, D, [&](int i, int d) { return t.k[i * kChunkLd<D> + d]; },
      [&](int d, int j) { return t.k[j * kChunkLd<D> + d]; });
#pragma unroll
  for (int r = 0; r < kk.kRegs; ++r) t.kk[kk.row(r) * kChunkLc + kk.col(r)] = kk.x[r];
}

/// dq = scale diag(gamma) dO S^T; dG (a) = rowsum(q * dq) into sc.dg. Synchronises.
template <typename T, int D>
__device__ __forceinline__ void dq_state_product(const BwdInputs<T, D>& in, const BwdTiles<D>& t,
                                                 int n_valid, float scale, RowFrag<D>& dq) {
  RowFrag<D> qdq;
  dq.fill(0.f);
  dq.mma_rows(n_valid, D, in.d_o, [&](int vv, int j) { return in.st[j * D + vv]; });
#pragma unroll
  for (int r = 0; r < dq.kRegs; ++r) {
    dq.x[r] *= scale * t.sc.gamma[dq.row(r)];
    qdq.x[r] = dq.x[r] * in.q(dq.row(r), dq.col(r));
  }
  row_sum(qdq, t.red, t.sc.dg, /*accumulate=*/false);
}

/// dW = -dU S^T.
template <typename T, int D>
__device__ __forceinline__ void dw_product(const BwdInputs<T, D>& in, const BwdTiles<D>& t,
                                           int n_valid) {
  RowFrag<D> dw;
  dw.fill(0.f);
  dw.mma_rows(
      n_valid, D, [&](int i, int vv) { return -in.du[i * D + vv]; },
      [&](int vv, int j) { return in.st[j * D + vv]; });
#pragma unroll
  for (int r = 0; r < dw.kRegs; ++r) t.dw[dw.row(r) * kChunkLd<D> + dw.col(r)] = dw.x[r];
}

/// dk = diag(decay) U dS^T; e_i = rowsum(k * dk) into sc.e. Synchronises (which also publishes dW
/// and K K^T).
template <typename T, int D>
__device__ __forceinline__ void dk_state_product(const BwdInputs<T, D>& in, const BwdTiles<D>& t,
                                                 int n_valid, RowFrag<D>& dk) {
  RowFrag<D> kdk;
  dk.fill(0.f);
  dk.mma_rows(
      n_valid, D, [&](int i, int vv) { return in.u[i * D + vv]; },
      [&](int vv, int j) { return in.dst[j * D + vv]; });
#pragma unroll
  for (int r = 0; r < dk.kRegs; ++r) {
    dk.x[r] *= t.sc.decay[dk.row(r)];
    kdk.x[r] = dk.x[r] * t.k[dk.row(r) * kChunkLd<D> + dk.col(r)];
  }
  row_sum(kdk, t.red, t.sc.e, /*accumulate=*/false);
}

/// dP = lower_incl(dO U^T).
template <typename T, int D>
__device__ __forceinline__ void dp_product(const BwdInputs<T, D>& in, const BwdTiles<D>& t,
                                           int n_valid) {
  SqFrag dp;
  dp.fill(0.f);
  dp.mma_rows(n_valid, D, in.d_o, [&](int vv, int j) { return in.u[j * D + vv]; });
#pragma unroll
  for (int r = 0; r < dp.kRegs; ++r) {
    t.dp[dp.row(r) * kChunkLc + dp.col(r)] = dp.col(r) <= dp.row(r) ? dp.x[r] : 0.f;
  }
}

/// dG (b) = rowsum(P * dP) - colsum(P * dP), added to sc.dg by threads i < C. P is read from
/// global memory (L2) here, its only use: staging it would cost the 18 KB of shared memory that
/// keep a second CTA of the D = 64 kernel off each SM.
template <int D>
__device__ __forceinline__ void dg_from_dp(const GdnParams& p, const detail::ChunkCta& c,
                                           const BwdTiles<D>& t) {
  constexpr int LC = kChunkLc;
  const int i = threadIdx.x;
  if (i < kC) {
    const float* attn = detail::as_f32(p.attn) + c.chunk * kC * kC;
    float s = 0.f;
    for (int j = 0; j < c.n_valid; ++j) {
      s +=
          __ldg(attn + i * kC + j) * t.dp[i * LC + j] - __ldg(attn + j * kC + i) * t.dp[j * LC + i];
    }
    t.sc.dg[i] += s;
  }
}

/// dP becomes scale (dP * R) in place (rows past the tokens are zero and stay so).
template <int D>
__device__ __forceinline__ void scale_dp(const BwdTiles<D>& t, int n_valid, float scale) {
  for (int idx = threadIdx.x; idx < n_valid * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    t.dp[i * kChunkLc + j] *= scale * t.sc.decay_ratio(i, j);
  }
}

/// dq += scale (dP * R) K;  dk += scale (dP * R)^T Q.
template <typename T, int D>
__device__ __forceinline__ void scaled_dp_products(const BwdInputs<T, D>& in, const BwdTiles<D>& t,
                                                   int n_valid, int depth, RowFrag<D>& dq,
                                                   RowFrag<D>& dk) {
  constexpr int LD = kChunkLd<D>, LC = kChunkLc;
  dq.mma_rows(
      n_valid, depth, [&](int i, int m) { return t.scaled_dp[i * LC + m]; },
      [&](int m, int j) { return t.k[m * LD + j]; });
  dk.mma_rows(
      n_valid, depth, [&](int i, int m) { return t.scaled_dp[m * LC + i]; }, in.q);
}

/// dA = dW Z^T + dU Y^T,  Z = diag(beta gamma) K,  Y = diag(beta) V.
template <typename T, int D>
__device__ __forceinline__ void da_product(const BwdInputs<T, D>& in, const BwdTiles<D>& t,
                                           int n_valid) {
  constexpr int LD = kChunkLd<D>;
  SqFrag f1, f2;
  f1.fill(0.f);
  f2.fill(0.f);
  f1.mma_rows(
      n_valid, D, [&](int i, int d) { return t.dw[i * LD + d]; },
      [&](int d, int j) { return t.k[j * LD + d]; });
  f2.mma_rows(
      n_valid, D, [&](int i, int vv) { return in.du[i * D + vv]; },
      [&](int vv, int j) { return in.v(j, vv); });
#pragma unroll
  for (int r = 0; r < f1.kRegs; ++r) {
    const int j = f1.col(r);
    t.da[f1.row(r) * kChunkLc + j] = t.sc.beta[j] * (t.sc.gamma[j] * f1.x[r] + f2.x[r]);
  }
}

/// M = A^T dA.
template <int D>
__device__ __forceinline__ void m_product(const BwdTiles<D>& t, int n_valid, int depth) {
  constexpr int LC = kChunkLc;
  SqFrag m;
  m.fill(0.f);
  m.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.a[l * LC + i]; },
      [&](int l, int j) { return t.da[l * LC + j]; });
#pragma unroll
  for (int r = 0; r < m.kRegs; ++r) t.m[m.row(r) * LC + m.col(r)] = m.x[r];
}

/// dL = strict_lower(-M A^T), over dA (which M has replaced).
template <int D>
__device__ __forceinline__ void dl_product(const BwdTiles<D>& t, int n_valid, int depth) {
  constexpr int LC = kChunkLc;
  SqFrag dl;
  dl.fill(0.f);
  dl.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.m[i * LC + l]; },
      [&](int l, int j) { return t.a[j * LC + l]; });
#pragma unroll
  for (int r = 0; r < dl.kRegs; ++r) {
    t.dl[dl.row(r) * LC + dl.col(r)] = dl.col(r) < dl.row(r) ? -dl.x[r] : 0.f;
  }
}

/// dG (f) = rowsum(L * dL) - colsum(L * dL), L = strict_lower(diag(beta) K K^T * R), added to sc.dg
/// by threads i < C.
template <int D>
__device__ __forceinline__ void dg_from_dl(const BwdTiles<D>& t, int n_valid) {
  constexpr int LC = kChunkLc;
  const int i = threadIdx.x;
  if (i < kC) {
    float s = 0.f;
    // Unrolled 4 deep, as the compiler chose before the kernel read as stages; left to choose
    // here, it unrolls 8 deep with 4- and 3-deep remainders: three copies of the body (two exp
    // and six shared loads each) for the same work.
#pragma unroll 4
    for (int j = 0; j < n_valid; ++j) {
      const float l_ij = j < i ? t.sc.beta[i] * t.kk[i * LC + j] * t.sc.decay_ratio(i, j) : 0.f;
      const float l_ji = i < j ? t.sc.beta[j] * t.kk[j * LC + i] * t.sc.decay_ratio(j, i) : 0.f;
      s += l_ij * t.dl[i * LC + j] - l_ji * t.dl[j * LC + i];
    }
    t.sc.dg[i] += s;
  }
}

/// dL becomes F = dL * R in place.
template <int D>
__device__ __forceinline__ void decay_dl(const BwdTiles<D>& t, int n_valid) {
  for (int idx = threadIdx.x; idx < n_valid * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    t.dl[i * kChunkLc + j] *= t.sc.decay_ratio(i, j);
  }
}

/// dZ = A^T dW: dk += diag(beta gamma) dZ; dbeta, dG (e) from rowsum(dZ * gamma K). Synchronises.
template <int D>
__device__ __forceinline__ void dz_stage(const BwdTiles<D>& t, int n_valid, int depth,
                                         RowFrag<D>& dk) {
  constexpr int LD = kChunkLd<D>, LC = kChunkLc;
  RowFrag<D> dz;
  dz.fill(0.f);
  dz.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.a[l * LC + i]; },
      [&](int l, int j) { return t.dw[l * LD + j]; });
#pragma unroll
  for (int r = 0; r < dz.kRegs; ++r) {
    const int i = dz.row(r);
    dk.x[r] += t.sc.beta[i] * t.sc.gamma[i] * dz.x[r];
    dz.x[r] *= t.sc.gamma[i] * t.k[i * LD + dz.col(r)];
  }
  row_sum(dz, t.red, t.sc.rs, /*accumulate=*/false);
  const int tid = threadIdx.x;
  if (tid < kC) {
    t.sc.db[tid] += t.sc.rs[tid];
    t.sc.dg[tid] += t.sc.beta[tid] * t.sc.rs[tid];
  }
}

/// dk += diag(beta) F K + F^T diag(beta) K;  dbeta += rowsum(F * K K^T).
template <int D>
__device__ __forceinline__ void f_products(const BwdTiles<D>& t, int n_valid, int depth,
                                           RowFrag<D>& dk) {
  constexpr int LD = kChunkLd<D>, LC = kChunkLc;
  RowFrag<D> fk;
  fk.fill(0.f);
  fk.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.f[i * LC + l]; },
      [&](int l, int j) { return t.k[l * LD + j]; });
#pragma unroll
  for (int r = 0; r < fk.kRegs; ++r) dk.x[r] += t.sc.beta[fk.row(r)] * fk.x[r];
  dk.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.f[l * LC + i]; },
      [&](int l, int j) { return t.sc.beta[l] * t.k[l * LD + j]; });
  const int i = threadIdx.x;
  if (i < kC) {
    float s = 0.f;
    for (int j = 0; j < n_valid; ++j) s += t.f[i * LC + j] * t.kk[i * LC + j];
    t.sc.db[i] += s;
  }
}

/// dY = A^T dU: dv = diag(beta) dY (written to grad_v); dbeta += rowsum(dY * V). Synchronises.
template <typename T, int D>
__device__ __forceinline__ void dy_stage(const GdnParams& p, int64_t tok, const BwdInputs<T, D>& in,
                                         const BwdTiles<D>& t, int n_valid, int depth) {
  RowFrag<D> dy;
  dy.fill(0.f);
  dy.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.a[l * kChunkLc + i]; },
      [&](int l, int j) { return in.du[l * D + j]; });
  T* dv = static_cast<T*>(p.grad_v) + tok;
#pragma unroll
  for (int r = 0; r < dy.kRegs; ++r) {
    const int i = dy.row(r), j = dy.col(r);
    if (i < n_valid) dv[i * in.v.stride + j] = detail::from_float<T>(t.sc.beta[i] * dy.x[r]);
    dy.x[r] *= in.v(i, j);
  }
  row_sum(dy, t.red, t.sc.rs, /*accumulate=*/false);
  const int tid = threadIdx.x;
  if (tid < kC) t.sc.db[tid] += t.sc.rs[tid];
}

/// dq and dk into grad_q and grad_k (the chunk's token rows).
template <typename T, int D>
__device__ __forceinline__ void store_dq_dk(const GdnParams& p, int64_t tok, int64_t row_stride,
                                            int n_valid, const RowFrag<D>& dq,
                                            const RowFrag<D>& dk) {
  T* dq_out = static_cast<T*>(p.grad_q) + tok;
  T* dk_out = static_cast<T*>(p.grad_k) + tok;
#pragma unroll
  for (int r = 0; r < dq.kRegs; ++r) {
    const int i = dq.row(r), j = dq.col(r);
    if (i < n_valid) {
      dq_out[i * row_stride + j] = detail::from_float<T>(dq.x[r]);
      dk_out[i * row_stride + j] = detail::from_float<T>(dk.x[r]);
    }
  }
}

// grid (NC, B*H). Every chunk-local gradient of docs/delta_rule.md section 3, in one CTA per chunk,
// on CUDA cores in fp32 (the fallback and the fp32-input path; bf16 inputs take
// gdn_chunk_bwd_tc_kernel).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) gdn_chunk_bwd_kernel(GdnParams p) {
  extern __shared__ float smem[];
  const BwdTiles<D> t(smem);
  const detail::ChunkCta c(p);
  const int n_valid = c.n_valid, depth = row_depth(n_valid);
  const int64_t tok = detail::token_offset(p, c.b, c.t0, c.h, D);
  const BwdInputs<T, D> in(p, c, tok);

  load_chunk<T, D>(p, c, in, t);
  __syncthreads();
  kk_product<D>(t, n_valid);
  RowFrag<D> dq, dk;
  dq_state_product<T, D>(in, t, n_valid, p.scale, dq);
  dw_product<T, D>(in, t, n_valid);
  dk_state_product<T, D>(in, t, n_valid, dk);  // its row sum also orders dW and K K^T before use
  dp_product<T, D>(in, t, n_valid);
  __syncthreads();
  dg_from_dp<D>(p, c, t);
  __syncthreads();
  scale_dp<D>(t, n_valid, p.scale);
  __syncthreads();
  scaled_dp_products<T, D>(in, t, n_valid, depth, dq, dk);
  __syncthreads();
  da_product<T, D>(in, t, n_valid);
  __syncthreads();
  m_product<D>(t, n_valid, depth);
  __syncthreads();
  dl_product<D>(t, n_valid, depth);
  __syncthreads();
  dg_from_dl<D>(t, n_valid);
  __syncthreads();
  decay_dl<D>(t, n_valid);
  __syncthreads();
  dz_stage<D>(t, n_valid, depth, dk);
  f_products<D>(t, n_valid, depth, dk);
  dy_stage<T, D>(p, tok, in, t, n_valid, depth);
  store_dq_dk<T, D>(p, tok, in.q.stride, n_valid, dq, dk);
  float part = 0.f;
  for (int idx = threadIdx.x; idx < D * D; idx += kThreads) part += in.st[idx] * in.dst[idx];
  const float state_dot = detail::block_sum<kThreads>(part, t.blk);
  detail::finish_gate_grads(p, c.b, c.h, c.t0, n_valid, state_dot, t.sc);
}

constexpr int kBwdSlice = 32;

/// The CUDA-core reverse scan and chunk kernel in fp32 (fp32 inputs, or bf16 with
/// GdnKernel::kFp32).
template <class Dims, typename T>
cudaError_t launch_bwd(const GdnParams& p, cudaStream_t stream, detail::CudaCoreKernels) {
  constexpr int D = detail::square_dim<Dims>();
  const unsigned bh = unsigned(p.batch * p.heads);
  const cudaError_t err =
      detail::launch_with_smem(gdn_chunk_bwd_scan_kernel<T, D, kBwdSlice>, dim3(D / kBwdSlice, bh),
                               kThreads, bwd_scan_smem_bytes<D, kBwdSlice>(), stream, p);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_bwd_kernel<T, D>, dim3(unsigned(p.n_chunks()), bh),
                                  kThreads, bwd_chunk_smem_bytes<D>(), stream, p);
}

/// The tensor-core reverse scan and chunk kernel (bf16 inputs).
template <class Dims, typename T>
cudaError_t launch_bwd(const GdnParams& p, cudaStream_t stream, detail::TensorCoreKernels) {
  static_assert(std::is_same_v<T, __nv_bfloat16>, "the tensor-core kernels take bf16 inputs");
  const cudaError_t err = detail::launch_gdn_chunk_bwd_scan_tc(p, stream);
  if (err != cudaSuccess) return err;
  return detail::launch_gdn_chunk_bwd_tc(p, stream);
}

template <class Dims, typename T>
size_t bwd_smem_bytes(const GdnParams&, detail::CudaCoreKernels) {
  constexpr int D = detail::square_dim<Dims>();
  return std::max(bwd_scan_smem_bytes<D, kBwdSlice>(), bwd_chunk_smem_bytes<D>());
}
template <class Dims, typename T>
size_t bwd_smem_bytes(const GdnParams& p, detail::TensorCoreKernels) {
  return std::max(detail::gdn_chunk_scan_tc_smem_bytes(p, /*backward=*/true),
                  detail::gdn_chunk_bwd_tc_smem_bytes(p));
}

}  // namespace

size_t gdn_chunk_bwd_smem_bytes(const GdnParams& p) {
  if (!detail::sizes_supported(p)) return 0;
  size_t bytes = 0;
  detail::dispatch(p, [&](auto dims, auto element, auto family) {
    bytes = bwd_smem_bytes<decltype(dims), decltype(element)>(p, family);
    return cudaSuccess;
  });
  return bytes;
}

cudaError_t gdn_chunk_bwd(const GdnParams& p, cudaStream_t stream) {
  if (!detail::sizes_supported(p) || !detail::backward_pointers_set(p)) {
    return cudaErrorInvalidValue;
  }
  return detail::dispatch(p, [&](auto dims, auto element, auto family) {
    return launch_bwd<decltype(dims), decltype(element)>(p, stream, family);
  });
}

}  // namespace hypnos::kernels
