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

// grid (V / BV, B*H). Reverse over chunks: dU = P^T dO + diag(decay) K dS;
// dS <- gamma_C dS + scale (diag(gamma) Q)^T dO - W^T dU. Stores dS (leaving each chunk) and dU.
template <typename T, int K, int V, int BV>
__global__ void __launch_bounds__(kThreads) gdn_chunk_bwd_scan_kernel(GdnParams p) {
  using Layout = detail::CudaCoreScanLayout<K, BV>;
  constexpr int LS = Layout::kLs;
  extern __shared__ float smem[];
  float* s_ds = smem;                          // [K][LS]
  float* s_du = s_ds + Layout::kStateFloats;   // [C][LS]
  float* s_gamma = s_du + Layout::kRowFloats;  // [C]
  float* s_decay = s_gamma + kC;               // [C]

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, h = bh % p.heads, qk_h = detail::qk_head(p, h);
  const detail::Sequence seq(p, bh / p.heads);
  const int64_t qk_stride = p.qk_heads() * K, v_stride = p.heads * V;
  const int tid = threadIdx.x;

  for (int idx = tid; idx < K * BV; idx += kThreads) {
    const int d = idx / BV, j = idx % BV;
    s_ds[d * LS + j] = p.grad_final_state ? p.grad_final_state[(bh * K + d) * V + v0 + j] : 0.f;
  }
  __syncthreads();  // the chunk loop reads the whole slice, written by other threads
  for (int64_t n = seq.n_chunks(p) - 1; n >= 0; --n) {
    const int64_t t0 = n * kC, chunk = seq.chunk(p, h, n);
    const int n_valid = seq.valid_rows(p, t0);
    const T* q = static_cast<const T*>(p.q) + detail::qk_offset(p, seq, t0, qk_h, K);
    const T* k = static_cast<const T*>(p.k) + detail::qk_offset(p, seq, t0, qk_h, K);
    const T* d_o = static_cast<const T*>(p.grad_o) + detail::token_offset(p, seq, t0, h, V);
    const float* w = detail::as_f32(p.w) + chunk * kC * K;
    const float* attn = detail::as_f32(p.attn) + chunk * kC * kC;
    if (tid < kC) detail::store_chunk_decays(p, chunk, tid, s_gamma, s_decay);
    {
      float* dst = detail::as_f32(p.grad_chunk_states) + chunk * K * V;
      for (int idx = tid; idx < K * BV; idx += kThreads) {
        const int d = idx / BV, j = idx % BV;
        dst[d * V + v0 + j] = s_ds[d * LS + j];
      }
    }
    __syncthreads();
    auto grad_out = [&](int i, int j) {
      return i < n_valid ? load(d_o + i * v_stride + v0 + j) : 0.f;
    };
    Frag<kC, BV> du, kds;
    du.fill(0.f);
    kds.fill(0.f);
    du.mma(
        kC, [&](int i, int m) { return attn[m * kC + i]; }, grad_out);
    kds.mma(
        K, [&](int i, int d) { return i < n_valid ? load(k + i * qk_stride + d) : 0.f; },
        [&](int d, int j) { return s_ds[d * LS + j]; });
#pragma unroll
    for (int r = 0; r < du.kRegs; ++r) {
      const float x = du.x[r] + s_decay[du.row(r)] * kds.x[r];
      s_du[du.row(r) * LS + du.col()] = x;
      detail::as_f32(p.grad_u)[(chunk * kC + du.row(r)) * V + v0 + du.col()] = x;
    }
    __syncthreads();
    Frag<K, BV> ds;
    const float gamma_last = s_gamma[kC - 1];
#pragma unroll
    for (int r = 0; r < ds.kRegs; ++r) ds.x[r] = gamma_last * s_ds[ds.row(r) * LS + ds.col()];
    ds.mma(
        kC,
        [&](int d, int i) {
          return i < n_valid ? p.scale * s_gamma[i] * load(q + i * qk_stride + d) : 0.f;
        },
        grad_out);
    ds.mma(
        kC, [&](int d, int i) { return -w[i * K + d]; },
        [&](int i, int j) { return s_du[i * LS + j]; });
    __syncthreads();
#pragma unroll
    for (int r = 0; r < ds.kRegs; ++r) s_ds[ds.row(r) * LS + ds.col()] = ds.x[r];
    __syncthreads();
  }
  if (p.grad_initial_state) {
    for (int idx = tid; idx < K * BV; idx += kThreads) {
      const int d = idx / BV, j = idx % BV;
      p.grad_initial_state[(bh * K + d) * V + v0 + j] = s_ds[d * LS + j];
    }
  }
}

/// The chunk kernel's shared memory, in the order BwdTiles lays it out: K and dW ([C][K + 1]),
/// K K^T, A, the dP / dA / dL tile and M ([C][C + 1]; odd row strides: column walks hit distinct
/// banks), the per-token scalars, row_sum's scratch (C rows of the widest row fragment's warps:
/// [C][max(K, V) / 32]) and a block-sum scratch (16). 202,304 bytes at K = 256: over sm_80's
/// 166,912 per block (the host falls back there), under sm_90's 232,448.
template <int K, int V>
struct BwdLayout {
  static constexpr int kLk = K + 1, kLc = kC + 1;
  static constexpr int kKFloats = kC * kLk, kCFloats = kC * kLc;
  static constexpr int kRowSumFloats = kC * ((K > V ? K : V) / 32);
  static constexpr size_t kBytes =
      sizeof(float) *
      (2 * kKFloats + 4 * kCFloats + detail::ChunkBwdScalars::kFloats + kRowSumFloats + 16);
  // At least 128 registers a thread (at most 2 CTAs): at 85 the CUDA-core kernels spill.
  static constexpr int kMinBlocks = detail::min_blocks_for_smem(kBytes, kThreads, 128);
};

/// The chunk kernel's shared memory by what it holds, one name per meaning; names of one space are
/// grouped, in the order BwdLayout<K, V> lays the spaces out.
template <int K, int V>
struct BwdTiles {
  using Layout = BwdLayout<K, V>;
  static constexpr int kLk = Layout::kLk, kLc = Layout::kLc;
  float *k, *dw;  // [C][LK] K, dW = -dU S^T
  float *kk, *a;  // [C][LC] K K^T, A = (I + L)^-1
  // ---- one [C][LC] tile: dP, then scale (dP * R) until dq and dk have taken it, then dA, then dL,
  // then F = dL * R
  float *dp, *scaled_dp, *da, *dl, *f;
  float* m;  // [C][LC] M = A^T dA
  detail::ChunkBwdScalars sc;
  float* red;  // [C * max(K, V) / 32] row-sum scratch
  float* blk;  // [16] block-sum scratch

  __device__ explicit BwdTiles(float* smem)
      : k(smem),
        dw(k + Layout::kKFloats),
        kk(dw + Layout::kKFloats),
        a(kk + Layout::kCFloats),
        dp(a + Layout::kCFloats),
        scaled_dp(dp),
        da(dp),
        dl(dp),
        f(dp),
        m(dp + Layout::kCFloats),
        sc(m + Layout::kCFloats),
        red(sc.rs + kC),
        blk(red + Layout::kRowSumFloats) {}
};

/// Element (i, j) of the chunk's rows of a [B, T, H, K] or [B, T, H, V] input, zero past the
/// tokens.
template <typename T>
struct ChunkRows {
  const T* x;
  int64_t stride;
  int n_valid;
  __device__ __forceinline__ float operator()(int i, int j) const {
    return i < n_valid ? load(x + i * stride + j) : 0.f;
  }
};

/// What the chunk kernel reads from global memory: the chunk's rows of q, k ([C][K]) and v, dO
/// ([C][V]), its U, dU ([C][V]), S entering and dS leaving the chunk ([K][V]).
template <typename T, int K, int V>
struct BwdInputs {
  ChunkRows<T> q, k, v, d_o;
  const float *u, *du, *st, *dst;
  __device__ BwdInputs(const GdnParams& p, const detail::ChunkCta& c, int64_t qk_tok, int64_t v_tok)
      : q{static_cast<const T*>(p.q) + qk_tok, p.qk_heads() * K, c.n_valid},
        k{static_cast<const T*>(p.k) + qk_tok, p.qk_heads() * K, c.n_valid},
        v{static_cast<const T*>(p.v) + v_tok, p.heads * V, c.n_valid},
        d_o{static_cast<const T*>(p.grad_o) + v_tok, p.heads * V, c.n_valid},
        u(detail::as_f32(p.u) + c.chunk * kC * V),
        du(detail::as_f32(p.grad_u) + c.chunk * kC * V),
        st(detail::as_f32(p.chunk_states) + c.chunk * K * V),
        dst(detail::as_f32(p.grad_chunk_states) + c.chunk * K * V) {}
};

template <int N>
using RowFrag = Frag<kC, N>;  // C x N outputs (N = K or V)
using SqFrag = Frag<kC, kC>;  // C x C outputs

/// K ([C][LK]), A ([C][LC]) and the gates into shared memory; dbeta starts at zero.
template <typename T, int K, int V>
__device__ __forceinline__ void load_chunk(const GdnParams& p, const detail::ChunkCta& c,
                                           const BwdInputs<T, K, V>& in, const BwdTiles<K, V>& t) {
  constexpr int LK = BwdTiles<K, V>::kLk, LC = BwdTiles<K, V>::kLc;
  const int tid = threadIdx.x;
  for (int idx = tid; idx < kC * K; idx += kThreads) {
    const int i = idx / K, d = idx % K;
    t.k[i * LK + d] = in.k(i, d);
  }
  for (int idx = tid; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    t.a[i * LC + j] = detail::as_f32(p.a_inv)[c.chunk * kC * kC + idx];
  }
  if (tid < kC) {
    t.sc.load_gates(p, c, tid);
    t.sc.db[tid] = 0.f;
  }
}

/// K K^T.
template <int K, int V>
__device__ __forceinline__ void kk_product(const BwdTiles<K, V>& t, int n_valid) {
  constexpr int LK = BwdTiles<K, V>::kLk, LC = BwdTiles<K, V>::kLc;
  SqFrag kk;
  kk.fill(0.f);
  kk.mma_rows(
      n_valid, K, [&](int i, int d) { return t.k[i * LK + d]; },
      [&](int d, int j) { return t.k[j * LK + d]; });
#pragma unroll
  for (int r = 0; r < kk.kRegs; ++r) t.kk[kk.row(r) * LC + kk.col(r)] = kk.x[r];
}

/// dq = scale diag(gamma) dO S^T; dG (a) = rowsum(q * dq) into sc.dg. Synchronises.
template <typename T, int K, int V>
__device__ __forceinline__ void dq_state_product(const BwdInputs<T, K, V>& in,
                                                 const BwdTiles<K, V>& t, int n_valid, float scale,
                                                 RowFrag<K>& dq) {
  RowFrag<K> qdq;
  dq.fill(0.f);
  dq.mma_rows(n_valid, V, in.d_o, [&](int vv, int j) { return in.st[j * V + vv]; });
#pragma unroll
  for (int r = 0; r < dq.kRegs; ++r) {
    dq.x[r] *= scale * t.sc.gamma[dq.row(r)];
    qdq.x[r] = dq.x[r] * in.q(dq.row(r), dq.col(r));
  }
  row_sum(qdq, t.red, t.sc.dg, /*accumulate=*/false);
}

/// dW = -dU S^T.
template <typename T, int K, int V>
__device__ __forceinline__ void dw_product(const BwdInputs<T, K, V>& in, const BwdTiles<K, V>& t,
                                           int n_valid) {
  RowFrag<K> dw;
  dw.fill(0.f);
  dw.mma_rows(
      n_valid, V, [&](int i, int vv) { return -in.du[i * V + vv]; },
      [&](int vv, int j) { return in.st[j * V + vv]; });
#pragma unroll
  for (int r = 0; r < dw.kRegs; ++r) t.dw[dw.row(r) * BwdTiles<K, V>::kLk + dw.col(r)] = dw.x[r];
}

/// dk = diag(decay) U dS^T; e_i = rowsum(k * dk) into sc.e. Synchronises (which also publishes dW
/// and K K^T).
template <typename T, int K, int V>
__device__ __forceinline__ void dk_state_product(const BwdInputs<T, K, V>& in,
                                                 const BwdTiles<K, V>& t, int n_valid,
                                                 RowFrag<K>& dk) {
  RowFrag<K> kdk;
  dk.fill(0.f);
  dk.mma_rows(
      n_valid, V, [&](int i, int vv) { return in.u[i * V + vv]; },
      [&](int vv, int j) { return in.dst[j * V + vv]; });
#pragma unroll
  for (int r = 0; r < dk.kRegs; ++r) {
    dk.x[r] *= t.sc.decay[dk.row(r)];
    kdk.x[r] = dk.x[r] * t.k[dk.row(r) * BwdTiles<K, V>::kLk + dk.col(r)];
  }
  row_sum(kdk, t.red, t.sc.e, /*accumulate=*/false);
}

/// dP = lower_incl(dO U^T).
template <typename T, int K, int V>
__device__ __forceinline__ void dp_product(const BwdInputs<T, K, V>& in, const BwdTiles<K, V>& t,
                                           int n_valid) {
  SqFrag dp;
  dp.fill(0.f);
  dp.mma_rows(n_valid, V, in.d_o, [&](int vv, int j) { return in.u[j * V + vv]; });
#pragma unroll
  for (int r = 0; r < dp.kRegs; ++r) {
    t.dp[dp.row(r) * BwdTiles<K, V>::kLc + dp.col(r)] = dp.col(r) <= dp.row(r) ? dp.x[r] : 0.f;
  }
}

/// dG (b) = rowsum(P * dP) - colsum(P * dP), added to sc.dg by threads i < C. P is read from
/// global memory (L2) here, its only use: staging it would cost the 18 KB of shared memory that
/// keep a second CTA of the K = V = 64 kernel off each SM.
template <int K, int V>
__device__ __forceinline__ void dg_from_dp(const GdnParams& p, const detail::ChunkCta& c,
                                           const BwdTiles<K, V>& t) {
  constexpr int LC = BwdTiles<K, V>::kLc;
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
template <int K, int V>
__device__ __forceinline__ void scale_dp(const BwdTiles<K, V>& t, int n_valid, float scale) {
  for (int idx = threadIdx.x; idx < n_valid * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    t.dp[i * BwdTiles<K, V>::kLc + j] *= scale * t.sc.decay_ratio(i, j);
  }
}

/// dq += scale (dP * R) K;  dk += scale (dP * R)^T Q.
template <typename T, int K, int V>
__device__ __forceinline__ void scaled_dp_products(const BwdInputs<T, K, V>& in,
                                                   const BwdTiles<K, V>& t, int n_valid, int depth,
                                                   RowFrag<K>& dq, RowFrag<K>& dk) {
  constexpr int LK = BwdTiles<K, V>::kLk, LC = BwdTiles<K, V>::kLc;
  dq.mma_rows(
      n_valid, depth, [&](int i, int m) { return t.scaled_dp[i * LC + m]; },
      [&](int m, int j) { return t.k[m * LK + j]; });
  dk.mma_rows(
      n_valid, depth, [&](int i, int m) { return t.scaled_dp[m * LC + i]; }, in.q);
}

/// dA = dW Z^T + dU Y^T,  Z = diag(beta gamma) K,  Y = diag(beta) V.
template <typename T, int K, int V>
__device__ __forceinline__ void da_product(const BwdInputs<T, K, V>& in, const BwdTiles<K, V>& t,
                                           int n_valid) {
  constexpr int LK = BwdTiles<K, V>::kLk;
  SqFrag f1, f2;
  f1.fill(0.f);
  f2.fill(0.f);
  f1.mma_rows(
      n_valid, K, [&](int i, int d) { return t.dw[i * LK + d]; },
      [&](int d, int j) { return t.k[j * LK + d]; });
  f2.mma_rows(
      n_valid, V, [&](int i, int vv) { return in.du[i * V + vv]; },
      [&](int vv, int j) { return in.v(j, vv); });
#pragma unroll
  for (int r = 0; r < f1.kRegs; ++r) {
    const int j = f1.col(r);
    t.da[f1.row(r) * BwdTiles<K, V>::kLc + j] = t.sc.beta[j] * (t.sc.gamma[j] * f1.x[r] + f2.x[r]);
  }
}

/// M = A^T dA.
template <int K, int V>
__device__ __forceinline__ void m_product(const BwdTiles<K, V>& t, int n_valid, int depth) {
  constexpr int LC = BwdTiles<K, V>::kLc;
  SqFrag m;
  m.fill(0.f);
  m.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.a[l * LC + i]; },
      [&](int l, int j) { return t.da[l * LC + j]; });
#pragma unroll
  for (int r = 0; r < m.kRegs; ++r) t.m[m.row(r) * LC + m.col(r)] = m.x[r];
}

/// dL = strict_lower(-M A^T), over dA (which M has replaced).
template <int K, int V>
__device__ __forceinline__ void dl_product(const BwdTiles<K, V>& t, int n_valid, int depth) {
  constexpr int LC = BwdTiles<K, V>::kLc;
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
template <int K, int V>
__device__ __forceinline__ void dg_from_dl(const BwdTiles<K, V>& t, int n_valid) {
  constexpr int LC = BwdTiles<K, V>::kLc;
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
template <int K, int V>
__device__ __forceinline__ void decay_dl(const BwdTiles<K, V>& t, int n_valid) {
  for (int idx = threadIdx.x; idx < n_valid * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    t.dl[i * BwdTiles<K, V>::kLc + j] *= t.sc.decay_ratio(i, j);
  }
}

/// dZ = A^T dW: dk += diag(beta gamma) dZ; dbeta, dG (e) from rowsum(dZ * gamma K). Synchronises.
template <int K, int V>
__device__ __forceinline__ void dz_stage(const BwdTiles<K, V>& t, int n_valid, int depth,
                                         RowFrag<K>& dk) {
  constexpr int LK = BwdTiles<K, V>::kLk, LC = BwdTiles<K, V>::kLc;
  RowFrag<K> dz;
  dz.fill(0.f);
  dz.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.a[l * LC + i]; },
      [&](int l, int j) { return t.dw[l * LK + j]; });
#pragma unroll
  for (int r = 0; r < dz.kRegs; ++r) {
    const int i = dz.row(r);
    dk.x[r] += t.sc.beta[i] * t.sc.gamma[i] * dz.x[r];
    dz.x[r] *= t.sc.gamma[i] * t.k[i * LK + dz.col(r)];
  }
  row_sum(dz, t.red, t.sc.rs, /*accumulate=*/false);
  const int tid = threadIdx.x;
  if (tid < kC) {
    t.sc.db[tid] += t.sc.rs[tid];
    t.sc.dg[tid] += t.sc.beta[tid] * t.sc.rs[tid];
  }
}

/// dk += diag(beta) F K + F^T diag(beta) K;  dbeta += rowsum(F * K K^T).
template <int K, int V>
__device__ __forceinline__ void f_products(const BwdTiles<K, V>& t, int n_valid, int depth,
                                           RowFrag<K>& dk) {
  constexpr int LK = BwdTiles<K, V>::kLk, LC = BwdTiles<K, V>::kLc;
  RowFrag<K> fk;
  fk.fill(0.f);
  fk.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.f[i * LC + l]; },
      [&](int l, int j) { return t.k[l * LK + j]; });
#pragma unroll
  for (int r = 0; r < fk.kRegs; ++r) dk.x[r] += t.sc.beta[fk.row(r)] * fk.x[r];
  dk.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.f[l * LC + i]; },
      [&](int l, int j) { return t.sc.beta[l] * t.k[l * LK + j]; });
  const int i = threadIdx.x;
  if (i < kC) {
    float s = 0.f;
    for (int j = 0; j < n_valid; ++j) s += t.f[i * LC + j] * t.kk[i * LC + j];
    t.sc.db[i] += s;
  }
}

/// dY = A^T dU: dv = diag(beta) dY (written to grad_v); dbeta += rowsum(dY * V). Synchronises.
template <typename T, int K, int V>
__device__ __forceinline__ void dy_stage(const GdnParams& p, int64_t v_tok,
                                         const BwdInputs<T, K, V>& in, const BwdTiles<K, V>& t,
                                         int n_valid, int depth) {
  RowFrag<V> dy;
  dy.fill(0.f);
  dy.mma_rows(
      n_valid, depth, [&](int i, int l) { return t.a[l * BwdTiles<K, V>::kLc + i]; },
      [&](int l, int j) { return in.du[l * V + j]; });
  T* dv = static_cast<T*>(p.grad_v) + v_tok;
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

/// dq and dk into grad_q and grad_k (the chunk's token rows, per value head: [*, H, K]).
template <typename T, int K>
__device__ __forceinline__ void store_dq_dk(const GdnParams& p, int64_t k_tok, int n_valid,
                                            const RowFrag<K>& dq, const RowFrag<K>& dk) {
  const int64_t row_stride = p.heads * K;
  T* dq_out = static_cast<T*>(p.grad_q) + k_tok;
  T* dk_out = static_cast<T*>(p.grad_k) + k_tok;
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
template <typename T, int K, int V>
__global__ void __launch_bounds__(kThreads, BwdLayout<K, V>::kMinBlocks)
    gdn_chunk_bwd_kernel(GdnParams p) {
  extern __shared__ float smem[];
  const BwdTiles<K, V> t(smem);
  const detail::ChunkCta c(p);
  if (c.beyond) return;
  const int n_valid = c.n_valid, depth = row_depth(n_valid);
  const int64_t v_tok = c.row * V;
  const BwdInputs<T, K, V> in(p, c, c.qk_row * K, v_tok);

  load_chunk<T, K, V>(p, c, in, t);
  __syncthreads();
  kk_product<K, V>(t, n_valid);
  RowFrag<K> dq, dk;
  dq_state_product<T, K, V>(in, t, n_valid, p.scale, dq);
  dw_product<T, K, V>(in, t, n_valid);
  dk_state_product<T, K, V>(in, t, n_valid, dk);  // its row sum also orders dW and K K^T before use
  dp_product<T, K, V>(in, t, n_valid);
  __syncthreads();
  dg_from_dp<K, V>(p, c, t);
  __syncthreads();
  scale_dp<K, V>(t, n_valid, p.scale);
  __syncthreads();
  scaled_dp_products<T, K, V>(in, t, n_valid, depth, dq, dk);
  __syncthreads();
  da_product<T, K, V>(in, t, n_valid);
  __syncthreads();
  m_product<K, V>(t, n_valid, depth);
  __syncthreads();
  dl_product<K, V>(t, n_valid, depth);
  __syncthreads();
  dg_from_dl<K, V>(t, n_valid);
  __syncthreads();
  decay_dl<K, V>(t, n_valid);
  __syncthreads();
  dz_stage<K, V>(t, n_valid, depth, dk);
  f_products<K, V>(t, n_valid, depth, dk);
  dy_stage<T, K, V>(p, v_tok, in, t, n_valid, depth);
  store_dq_dk<T, K>(p, c.row * K, n_valid, dq, dk);
  float part = 0.f;
  for (int idx = threadIdx.x; idx < K * V; idx += kThreads) part += in.st[idx] * in.dst[idx];
  const float state_dot = detail::block_sum<kThreads>(part, t.blk);
  detail::finish_gate_grads(p, c, state_dot, t.sc);
}

constexpr int kBwdSlice = 32;

/// The CUDA-core reverse scan and chunk kernel in fp32 (fp32 inputs, or bf16 with
/// GdnKernel::kFp32).
template <int K, int V, typename T>
cudaError_t launch_bwd(const GdnParams& p, cudaStream_t stream, detail::CudaCoreKernels) {
  const unsigned bh = unsigned(p.batch * p.heads);
  const cudaError_t err = detail::launch_with_smem(
      gdn_chunk_bwd_scan_kernel<T, K, V, kBwdSlice>, dim3(V / kBwdSlice, bh), kThreads,
      detail::CudaCoreScanLayout<K, kBwdSlice>::kBytes, stream, p);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_bwd_kernel<T, K, V>, dim3(unsigned(p.n_chunks()), bh),
                                  kThreads, BwdLayout<K, V>::kBytes, stream, p);
}

/// The tensor-core reverse scan and chunk kernel (bf16 inputs).
template <int K, int V, typename T>
cudaError_t launch_bwd(const GdnParams& p, cudaStream_t stream, detail::TensorCoreKernels) {
  static_assert(std::is_same_v<T, __nv_bfloat16>, "the tensor-core kernels take bf16 inputs");
  const cudaError_t err = detail::launch_gdn_chunk_bwd_scan_tc(p, stream);
  if (err != cudaSuccess) return err;
  return detail::launch_gdn_chunk_bwd_tc(p, stream);
}

template <int K, int V, typename T>
size_t bwd_smem_bytes(const GdnParams&, detail::CudaCoreKernels) {
  return std::max(detail::CudaCoreScanLayout<K, kBwdSlice>::kBytes, BwdLayout<K, V>::kBytes);
}
template <int K, int V, typename T>
size_t bwd_smem_bytes(const GdnParams& p, detail::TensorCoreKernels) {
  return std::max(detail::gdn_chunk_scan_tc_smem_bytes(p, /*backward=*/true),
                  detail::gdn_chunk_bwd_tc_smem_bytes(p));
}

}  // namespace

size_t gdn_chunk_bwd_smem_bytes(const GdnParams& p) {
  return detail::dispatch_bytes(p, [&](auto dims, auto element, auto family) {
    using Dims = decltype(dims);
    return bwd_smem_bytes<Dims::kK, Dims::kV, decltype(element)>(p, family);
  });
}

cudaError_t gdn_chunk_bwd(const GdnParams& p, cudaStream_t stream) {
  if (!detail::sizes_supported(p) || !detail::backward_pointers_set(p)) {
    return cudaErrorInvalidValue;
  }
  return detail::dispatch(p, [&](auto dims, auto element, auto family) {
    using Dims = decltype(dims);
    return launch_bwd<Dims::kK, Dims::kV, decltype(element)>(p, stream, family);
  });
}

}  // namespace hypnos::kernels
