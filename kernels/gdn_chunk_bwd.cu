// Backward of the chunked gated delta rule (KERNELS.md section 3): a reverse scan over chunks per
// (sequence, head, V-slice) carrying dS, then one chunk-parallel kernel that does every chunk-local
// gradient (dq, dk, the WY backward, dv, dbeta, dg and its in-chunk reverse cumsum) and writes each
// final gradient once. No atomics: every sum has a fixed order, so two runs are bitwise equal.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "gdn.h"
#include "gdn_chunk_bwd_tc.h"
#include "gdn_common.cuh"
#include "gdn_mma.cuh"

namespace hypnos::kernels {
namespace {

using detail::Frag;
using detail::kC;
using detail::kThreads;
using detail::load;
using detail::row_depth;
using detail::row_sum;

__device__ __forceinline__ int valid_rows(const GdnParams& p, int64_t t0) {
  return int(p.seq_len - t0 < kC ? p.seq_len - t0 : kC);
}

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
    const float* w = p.w + chunk * kC * D;
    const float* attn = p.attn + chunk * kC * kC;
    if (tid < kC) {
      const float g_last = p.g_cum[chunk * kC + kC - 1], g_i = p.g_cum[chunk * kC + tid];
      s_gamma[tid] = __expf(g_i);
      s_decay[tid] = __expf(g_last - g_i);
    }
    {
      float* dst = p.grad_chunk_states + chunk * D * D;
      for (int idx = tid; idx < D * BV; idx += kThreads) {
        const int d = idx % D, j = idx / D;
        dst[(v0 + j) * D + d] = s_ds[d * LS + j];
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
      p.grad_u[(chunk * kC + du.row(r)) * D + v0 + du.col()] = x;
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
  return sizeof(float) * (2 * kC * kChunkLd<D> + 4 * kC * kChunkLc + 8 * kC + kC * (D / 32) + 16);
}

// grid (NC, B*H). Every chunk-local gradient of KERNELS.md section 3, in one CTA per chunk, on
// CUDA cores in fp32 (the fallback and the fp32-input path; bf16 inputs take
// gdn_chunk_bwd_bf16_kernel).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) gdn_chunk_bwd_kernel(GdnParams p) {
  constexpr int LD = kChunkLd<D>, LC = kChunkLc;
  extern __shared__ float smem[];
  float* s_k = smem;                     // [C][LD] K
  float* s_dw = s_k + kC * LD;           // [C][LD] dW = -dU S^T
  float* s_kk = s_dw + kC * LD;          // [C][LC] K K^T
  float* s_a = s_kk + kC * LC;           // [C][LC] A = (I + L)^-1
  float* s_x1 = s_a + kC * LC;           // [C][LC] dP, dP * R, dA, dL, F = dL * R
  float* s_x2 = s_x1 + kC * LC;          // [C][LC] A^T dA
  float* s_g = s_x2 + kC * LC;           // [C] G
  float* s_gamma = s_g + kC;             // [C] exp(G_i)
  float* s_decay = s_gamma + kC;         // [C] exp(G_C - G_i)
  float* s_beta = s_decay + kC;          // [C]
  float* s_dg = s_beta + kC;             // [C] dG without the state-update terms
  float* s_e = s_dg + kC;                // [C] e_i = decay_i k_i^T dS u_i
  float* s_db = s_e + kC;                // [C]
  float* s_rs = s_db + kC;               // [C] row sums
  float* s_red = s_rs + kC;              // [C * D / 32] row-sum scratch
  float* s_blk = s_red + kC * (D / 32);  // [16] block-sum scratch

  const int n = blockIdx.x;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), t0 = int64_t(n) * kC, chunk = bh * n_chunks + n;
  const int n_valid = valid_rows(p, t0), depth = row_depth(n_valid);
  const int64_t row_stride = p.heads * D;
  const int64_t tok = detail::token_offset(p, b, t0, h, D);
  const T* q = static_cast<const T*>(p.q) + tok;
  const T* k = static_cast<const T*>(p.k) + tok;
  const T* v = static_cast<const T*>(p.v) + tok;
  const T* d_o = static_cast<const T*>(p.grad_o) + tok;
  const float* u = p.u + chunk * kC * D;
  const float* du = p.grad_u + chunk * kC * D;
  const float* st = p.chunk_states + chunk * D * D;        // S^T: [V][K]
  const float* dst = p.grad_chunk_states + chunk * D * D;  // dS^T: [V][K]
  const int tid = threadIdx.x;
  const float scale = p.scale;

  auto in = [&](const T* x, int i, int j) {
    return i < n_valid ? load(x + i * row_stride + j) : 0.f;
  };
  for (int idx = tid; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    s_k[i * LD + d] = in(k, i, d);
  }
  for (int idx = tid; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    s_a[i * LC + j] = p.a_inv[chunk * kC * kC + idx];
  }
  if (tid < kC) {
    const float g_last = p.g_cum[chunk * kC + kC - 1], g_i = p.g_cum[chunk * kC + tid];
    s_g[tid] = g_i;
    s_gamma[tid] = __expf(g_i);
    s_decay[tid] = __expf(g_last - g_i);
    s_beta[tid] = tid < n_valid ? p.beta[(b * p.seq_len + t0 + tid) * p.heads + h] : 0.f;
    s_db[tid] = 0.f;
  }
  __syncthreads();
  auto decay_ratio = [&](int i, int j) { return i >= j ? __expf(s_g[i] - s_g[j]) : 0.f; };

  {  // K K^T
    Frag<kC, kC> kk;
    kk.fill(0.f);
    kk.mma_rows(
        n_valid, D, [&](int i, int d) { return s_k[i * LD + d]; },
        [&](int d, int j) { return s_k[j * LD + d]; });
#pragma unroll
    for (int r = 0; r < kk.kRegs; ++r) s_kk[kk.row(r) * LC + kk.col(r)] = kk.x[r];
  }
  // dq = scale diag(gamma) dO S^T; dG (a) = rowsum(q * that).
  Frag<kC, D> dq, dk, tmp;
  dq.fill(0.f);
  dq.mma_rows(
      n_valid, D, [&](int i, int vv) { return in(d_o, i, vv); },
      [&](int vv, int j) { return st[vv * D + j]; });
#pragma unroll
  for (int r = 0; r < dq.kRegs; ++r) {
    dq.x[r] *= scale * s_gamma[dq.row(r)];
    tmp.x[r] = dq.x[r] * in(q, dq.row(r), dq.col(r));
  }
  row_sum(tmp, s_red, s_dg, /*accumulate=*/false);
  {  // dW = -dU S^T
    tmp.fill(0.f);
    tmp.mma_rows(
        n_valid, D, [&](int i, int vv) { return -du[i * D + vv]; },
        [&](int vv, int j) { return st[vv * D + j]; });
#pragma unroll
    for (int r = 0; r < tmp.kRegs; ++r) s_dw[tmp.row(r) * LD + tmp.col(r)] = tmp.x[r];
  }
  // dk = diag(decay) U dS^T; e_i = rowsum(k * that).
  dk.fill(0.f);
  dk.mma_rows(
      n_valid, D, [&](int i, int vv) { return u[i * D + vv]; },
      [&](int vv, int j) { return dst[vv * D + j]; });
#pragma unroll
  for (int r = 0; r < dk.kRegs; ++r) {
    dk.x[r] *= s_decay[dk.row(r)];
    tmp.x[r] = dk.x[r] * s_k[dk.row(r) * LD + dk.col(r)];
  }
  row_sum(tmp, s_red, s_e, /*accumulate=*/false);  // also orders s_dw and s_kk before use
  {                                                // dP = lower_incl(dO U^T)
    Frag<kC, kC> dp;
    dp.fill(0.f);
    dp.mma_rows(
        n_valid, D, [&](int i, int vv) { return in(d_o, i, vv); },
        [&](int vv, int j) { return u[j * D + vv]; });
#pragma unroll
    for (int r = 0; r < dp.kRegs; ++r) {
      s_x1[dp.row(r) * LC + dp.col(r)] = dp.col(r) <= dp.row(r) ? dp.x[r] : 0.f;
    }
  }
  __syncthreads();
  if (tid < kC) {  // dG (b) = rowsum(P * dP) - colsum(P * dP)
    // P is read from global memory (L2) here, its only use: staging it would cost the 18 KB of
    // shared memory that keep a second CTA of the D = 64 kernel off each SM.
    const float* attn = p.attn + chunk * kC * kC;
    float s = 0.f;
    for (int j = 0; j < n_valid; ++j) {
      s += __ldg(attn + tid * kC + j) * s_x1[tid * LC + j] -
           __ldg(attn + j * kC + tid) * s_x1[j * LC + tid];
    }
    s_dg[tid] += s;
  }
  __syncthreads();
  // Rows past the tokens are zero here and in F below: only the token rows are scaled.
  for (int idx = tid; idx < n_valid * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    s_x1[i * LC + j] *= scale * decay_ratio(i, j);  // scale (dP * R)
  }
  __syncthreads();
  // dq += scale (dP * R) K;  dk += scale (dP * R)^T Q
  dq.mma_rows(
      n_valid, depth, [&](int i, int m) { return s_x1[i * LC + m]; },
      [&](int m, int j) { return s_k[m * LD + j]; });
  dk.mma_rows(
      n_valid, depth, [&](int i, int m) { return s_x1[m * LC + i]; },
      [&](int m, int j) { return in(q, m, j); });
  __syncthreads();
  {  // dA = dW Z^T + dU Y^T,  Z = diag(beta gamma) K,  Y = diag(beta) V
    Frag<kC, kC> f1, f2;
    f1.fill(0.f);
    f2.fill(0.f);
    f1.mma_rows(
        n_valid, D, [&](int i, int d) { return s_dw[i * LD + d]; },
        [&](int d, int j) { return s_k[j * LD + d]; });
    f2.mma_rows(
        n_valid, D, [&](int i, int vv) { return du[i * D + vv]; },
        [&](int vv, int j) { return in(v, j, vv); });
#pragma unroll
    for (int r = 0; r < f1.kRegs; ++r) {
      const int j = f1.col(r);
      s_x1[f1.row(r) * LC + j] = s_beta[j] * (s_gamma[j] * f1.x[r] + f2.x[r]);
    }
  }
  __syncthreads();
  {  // M = A^T dA
    Frag<kC, kC> m;
    m.fill(0.f);
    m.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_a[l * LC + i]; },
        [&](int l, int j) { return s_x1[l * LC + j]; });
#pragma unroll
    for (int r = 0; r < m.kRegs; ++r) s_x2[m.row(r) * LC + m.col(r)] = m.x[r];
  }
  __syncthreads();
  {  // dL = strict_lower(-M A^T)
    Frag<kC, kC> dl;
    dl.fill(0.f);
    dl.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_x2[i * LC + l]; },
        [&](int l, int j) { return s_a[j * LC + l]; });
#pragma unroll
    for (int r = 0; r < dl.kRegs; ++r) {
      s_x1[dl.row(r) * LC + dl.col(r)] = dl.col(r) < dl.row(r) ? -dl.x[r] : 0.f;
    }
  }
  __syncthreads();
  if (tid < kC) {  // dG (f) = rowsum(L * dL) - colsum(L * dL)
    const int i = tid;
    float s = 0.f;
    for (int j = 0; j < n_valid; ++j) {
      const float l_ij = j < i ? s_beta[i] * s_kk[i * LC + j] * decay_ratio(i, j) : 0.f;
      const float l_ji = i < j ? s_beta[j] * s_kk[j * LC + i] * decay_ratio(j, i) : 0.f;
      s += l_ij * s_x1[i * LC + j] - l_ji * s_x1[j * LC + i];
    }
    s_dg[i] += s;
  }
  __syncthreads();
  for (int idx = tid; idx < n_valid * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    s_x1[i * LC + j] *= decay_ratio(i, j);  // F = dL * R
  }
  __syncthreads();
  {  // dZ = A^T dW: dk += diag(beta gamma) dZ; dbeta, dG (e) from rowsum(dZ * gamma K)
    tmp.fill(0.f);
    tmp.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_a[l * LC + i]; },
        [&](int l, int j) { return s_dw[l * LD + j]; });
#pragma unroll
    for (int r = 0; r < tmp.kRegs; ++r) {
      const int i = tmp.row(r);
      dk.x[r] += s_beta[i] * s_gamma[i] * tmp.x[r];
      tmp.x[r] *= s_gamma[i] * s_k[i * LD + tmp.col(r)];
    }
    row_sum(tmp, s_red, s_rs, /*accumulate=*/false);
    if (tid < kC) {
      s_db[tid] += s_rs[tid];
      s_dg[tid] += s_beta[tid] * s_rs[tid];
    }
  }
  {  // dk += diag(beta) F K + F^T diag(beta) K;  dbeta += rowsum(F * K K^T)
    tmp.fill(0.f);
    tmp.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_x1[i * LC + l]; },
        [&](int l, int j) { return s_k[l * LD + j]; });
#pragma unroll
    for (int r = 0; r < tmp.kRegs; ++r) dk.x[r] += s_beta[tmp.row(r)] * tmp.x[r];
    dk.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_x1[l * LC + i]; },
        [&](int l, int j) { return s_beta[l] * s_k[l * LD + j]; });
    if (tid < kC) {
      float s = 0.f;
      for (int j = 0; j < n_valid; ++j) s += s_x1[tid * LC + j] * s_kk[tid * LC + j];
      s_db[tid] += s;
    }
  }
  {  // dY = A^T dU: dv = diag(beta) dY; dbeta += rowsum(dY * V)
    tmp.fill(0.f);
    tmp.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_a[l * LC + i]; },
        [&](int l, int j) { return du[l * D + j]; });
    T* dv = static_cast<T*>(p.grad_v) + tok;
#pragma unroll
    for (int r = 0; r < tmp.kRegs; ++r) {
      const int i = tmp.row(r), j = tmp.col(r);
      if (i < n_valid) dv[i * row_stride + j] = detail::from_float<T>(s_beta[i] * tmp.x[r]);
      tmp.x[r] *= in(v, i, j);
    }
    row_sum(tmp, s_red, s_rs, /*accumulate=*/false);
    if (tid < kC) s_db[tid] += s_rs[tid];
  }
  {
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
  // dG (c) + (d) on the last position: gamma_C <S, dS> + sum_i e_i; then dg = reverse cumsum of dG.
  float part = 0.f;
  for (int idx = tid; idx < D * D; idx += kThreads) part += st[idx] * dst[idx];
  const float state_dot = detail::block_sum<kThreads>(part, s_blk);
  if (tid == 0) {
    float e_sum = 0.f;
    for (int i = 0; i < kC; ++i) e_sum += s_e[i];
    float acc = 0.f;
    for (int i = kC - 1; i >= 0; --i) {
      float dg_i = s_dg[i] - s_e[i];
      if (i == kC - 1) dg_i += s_gamma[kC - 1] * state_dot + e_sum;
      acc += dg_i;
      s_rs[i] = acc;
    }
  }
  __syncthreads();
  if (tid < n_valid) {
    const int64_t gi = (b * p.seq_len + t0 + tid) * p.heads + h;
    p.grad_g[gi] = s_rs[tid];
    p.grad_beta[gi] = s_db[tid];
  }
}

constexpr int kTcThreads = 128;      // 4 warps
constexpr int kTcSlice = 32;         // BV: dS columns per CTA
constexpr int kTcLS = kTcSlice + 8;  // fp32 stride of dS and dU: B-fragment reads hit 32 banks
constexpr int kTcLO = kTcSlice + 8;  // bf16 stride of the dO slice

template <int D>
constexpr size_t tc_bwd_scan_smem_bytes() {
  return sizeof(float) * ((D + kC) * kTcLS + 2 * kC) +
         sizeof(__nv_bfloat16) * (kC * (D + 16) + kC * kTcLO);
}

// grid (D / 32, B*H), 4 warps; bf16 inputs. Same contract as gdn_chunk_bwd_scan_kernel with the
// matmuls on tensor cores (mma.sync m16n8k8 tf32, fp32 accumulation): dS in fp32 registers of the
// owning warp (rows [w D/4, (w+1) D/4)), a shared copy for the B operand of K dS; q and the dO
// slice staged in shared memory as bf16 (exact; q is read transposed). k is read once per element
// from global memory: about 54 KB of shared memory for D = 128, four CTAs per H100 SM, so the 512
// CTAs of B*H = 128 run in one wave instead of two.
template <int D>
__global__ void __launch_bounds__(kTcThreads, 4) gdn_chunk_bwd_scan_tc_kernel(GdnParams p) {
  using T = __nv_bfloat16;
  constexpr int BV = kTcSlice, LS = kTcLS, LO = kTcLO, LQ = D + 16;
  constexpr int kNT = BV / 8;
  constexpr int kStateMT = D / 64;
  using RowTiling = mma::WarpTiling<1, kNT>;
  using StateTiling = mma::WarpTiling<kStateMT, kNT>;
  extern __shared__ float smem[];
  float* s_ds = smem;                           // [D][LS]  dS slice (operand copy)
  float* s_du = s_ds + D * LS;                  // [C][LS]  dU
  float* s_gamma = s_du + kC * LS;              // [C]
  float* s_decay = s_gamma + kC;                // [C]
  T* s_q = reinterpret_cast<T*>(s_decay + kC);  // [C][LQ]
  T* s_do = s_q + kC * LQ;                      // [C][LO]  dO[:, v0 : v0 + BV]

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), row_stride = p.heads * D;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  auto grad_out = [&](int m, int j) { return __bfloat162float(s_do[m * LO + j]); };

  mma::WarpStateTile<kStateMT, kNT> ds;
  ds.for_each(warp, lane, [&](int d, int j, float& x) {
    x = p.grad_final_state ? p.grad_final_state[(bh * D + d) * D + v0 + j] : 0.f;
    s_ds[d * LS + j] = x;
  });
  for (int64_t n = n_chunks - 1; n >= 0; --n) {
    const int64_t t0 = n * kC, chunk = bh * n_chunks + n;
    const int n_valid = valid_rows(p, t0);
    const T* q = static_cast<const T*>(p.q) + detail::token_offset(p, b, t0, h, D);
    const T* k = static_cast<const T*>(p.k) + detail::token_offset(p, b, t0, h, D);
    const T* d_o = static_cast<const T*>(p.grad_o) + detail::token_offset(p, b, t0, h, D);
    const float* w = p.w + chunk * kC * D;
    const float* attn = p.attn + chunk * kC * kC;
    for (int idx = tid; idx < kC * (D / 2); idx += kTcThreads) {
      const int i = idx / (D / 2), c = idx % (D / 2);
      const bool ok = i < n_valid;
      reinterpret_cast<uint32_t*>(s_q + i * LQ)[c] =
          ok ? __ldg(reinterpret_cast<const uint32_t*>(q + i * row_stride) + c) : 0u;
    }
    for (int idx = tid; idx < kC * (BV / 2); idx += kTcThreads) {
      const int i = idx / (BV / 2), c = idx % (BV / 2);
      reinterpret_cast<uint32_t*>(s_do + i * LO)[c] =
          i < n_valid ? __ldg(reinterpret_cast<const uint32_t*>(d_o + i * row_stride + v0) + c)
                      : 0u;
    }
    if (tid < kC) {
      const float g_last = p.g_cum[chunk * kC + kC - 1], g_i = p.g_cum[chunk * kC + tid];
      s_gamma[tid] = __expf(g_i);
      s_decay[tid] = __expf(g_last - g_i);
    }
    __syncthreads();  // staged tiles and (first chunk) s_ds are complete
    {
      float* dst = p.grad_chunk_states + chunk * D * D;
      for (int idx = tid; idx < D * BV; idx += kTcThreads) {
        const int d = idx % D, j = idx / D;
        dst[(v0 + j) * D + d] = s_ds[d * LS + j];
      }
    }
    const int depth = row_depth(n_valid);
    {  // dU = P^T dO + diag(decay) K dS, rows [16 warp, 16 warp + 16); zero past the tokens
      const int i0 = warp * 16;
      float kds[kNT][4] = {}, du[kNT][4] = {};
      if (i0 < n_valid) {
        const T* k_rows = k + i0 * row_stride;
        const int k_rows_valid = n_valid - i0;
        mma::warp_mma_tf32<kNT>(
            kds, lane, 0, D / 8,
            [&](int i, int d) {
              return i < k_rows_valid ? __bfloat162float(__ldg(k_rows + i * row_stride + d)) : 0.f;
            },
            [&](int d, int j) { return s_ds[d * LS + j]; });
        // P^T is upper triangular: rows of this warp meet only columns from 16 warp on.
        mma::warp_mma_tf32<kNT>(
            du, lane, i0, (depth - i0) / 8,
            [&](int i, int m) { return __ldg(attn + m * kC + i0 + i); }, grad_out);
      }
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
        for (int r = 0; r < 4; r += 2) {  // registers r, r + 1: columns j, j + 1 of row i
          const int i = RowTiling::row(warp, 0, lane, r), j = RowTiling::col(nt, lane, r);
          const float x0 = du[nt][r] + s_decay[i] * kds[nt][r];
          const float x1 = du[nt][r + 1] + s_decay[i] * kds[nt][r + 1];
          s_du[i * LS + j] = x0;
          s_du[i * LS + j + 1] = x1;
          detail::store_pair(p.grad_u + (chunk * kC + i) * D + v0 + j, x0, x1);
        }
      }
    }
    __syncthreads();  // s_du complete; every warp is done reading s_ds
    {                 // dS <- gamma_C dS + scale (diag(gamma) Q)^T dO - W^T dU
      const float gamma_last = s_gamma[kC - 1];
      ds.for_each(warp, lane, [&](int, int, float& x) { x *= gamma_last; });
#pragma unroll
      for (int mt = 0; mt < kStateMT; ++mt) {
        const int d0 = warp * StateTiling::kWarpRows + mt * 16;
        mma::warp_mma_tf32<kNT>(
            ds.x[mt], lane, 0, depth / 8,
            [&](int d, int i) {
              return p.scale * s_gamma[i] * __bfloat162float(s_q[i * LQ + d0 + d]);
            },
            grad_out);
        mma::warp_mma_tf32<kNT>(
            ds.x[mt], lane, 0, depth / 8, [&](int d, int i) { return -__ldg(w + i * D + d0 + d); },
            [&](int i, int j) { return s_du[i * LS + j]; });
      }
      // No warp reads s_ds in this phase (the K dS product above is behind the barrier).
      ds.for_each(warp, lane, [&](int d, int j, float& x) { s_ds[d * LS + j] = x; });
    }
    __syncthreads();  // s_ds is the new dS before the next chunk stores and reads it
  }
  if (p.grad_initial_state) {
    ds.for_each(warp, lane, [&](int d, int j, float& x) {
      p.grad_initial_state[(bh * D + d) * D + v0 + j] = x;
    });
  }
}

constexpr int kBwdSlice = 32;

template <typename T, int D>
cudaError_t launch_bwd_chunk(const GdnParams& p, cudaStream_t stream) {
  return detail::launch_with_smem(gdn_chunk_bwd_kernel<T, D>,
                                  dim3(unsigned(p.n_chunks()), unsigned(p.batch * p.heads)),
                                  kThreads, bwd_chunk_smem_bytes<D>(), stream, p);
}

template <typename T, int D>
cudaError_t launch_bwd(const GdnParams& p, cudaStream_t stream) {
  const unsigned bh = unsigned(p.batch * p.heads);
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  const bool tc = kBf16 && p.kernel == GdnKernel::kTensorCore;
  cudaError_t err = cudaSuccess;
  if constexpr (kBf16) {
    if (tc) {
      err = detail::prefer_max_shared(gdn_chunk_bwd_scan_tc_kernel<D>);  // four CTAs per SM
      if (err != cudaSuccess) return err;
      err = detail::launch_with_smem(gdn_chunk_bwd_scan_tc_kernel<D>, dim3(D / kTcSlice, bh),
                                     kTcThreads, tc_bwd_scan_smem_bytes<D>(), stream, p);
    }
  }
  if (!tc) {
    err = detail::launch_with_smem(gdn_chunk_bwd_scan_kernel<T, D, kBwdSlice>,
                                   dim3(D / kBwdSlice, bh), kThreads,
                                   bwd_scan_smem_bytes<D, kBwdSlice>(), stream, p);
  }
  if (err != cudaSuccess) return err;
  return tc ? detail::launch_gdn_chunk_bwd_tc(p, stream) : launch_bwd_chunk<T, D>(p, stream);
}

}  // namespace

cudaError_t gdn_chunk_bwd(const GdnParams& p, cudaStream_t stream) {
  if (p.head_dim_k != p.head_dim_v || (p.head_dim_k != 64 && p.head_dim_k != 128)) {
    return cudaErrorInvalidValue;
  }
  if (p.batch <= 0 || p.seq_len <= 0 || p.heads <= 0 || p.batch * p.heads > 65535) {
    return cudaErrorInvalidValue;
  }
  if (!p.q || !p.k || !p.v || !p.beta || !p.g_cum || !p.w || !p.attn || !p.a_inv || !p.u ||
      !p.chunk_states || !p.grad_o || !p.grad_q || !p.grad_k || !p.grad_v || !p.grad_g ||
      !p.grad_beta || !p.grad_u || !p.grad_chunk_states) {
    return cudaErrorInvalidValue;
  }
  const bool bf16 = p.dtype == GdnDtype::kBFloat16;
  if (p.head_dim_k == 64) {
    return bf16 ? launch_bwd<__nv_bfloat16, 64>(p, stream) : launch_bwd<float, 64>(p, stream);
  }
  return bf16 ? launch_bwd<__nv_bfloat16, 128>(p, stream) : launch_bwd<float, 128>(p, stream);
}

}  // namespace hypnos::kernels
