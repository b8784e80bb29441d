// Backward of the chunked gated delta rule (docs/delta_rule.md section 3): a reverse scan over
// chunks per (sequence, head, V-slice) carrying dS, then one chunk-parallel kernel that does every
// chunk-local gradient (dq, dk, the WY backward, dv, dbeta, dg and its in-chunk reverse cumsum) and
// writes each final gradient once. No atomics: every sum has a fixed order, so two runs are bitwise
// equal. This file holds the entry point and the CUDA-core (fp32) kernels; bf16 inputs take the
// tensor-core reverse scan (gdn_chunk_scan_tc.cu) and chunk kernel (gdn_chunk_bwd_tc.cu).
#include <cuda_bf16.h>

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

// grid (NC, B*H). Every chunk-local gradient of docs/delta_rule.md section 3, in one CTA per chunk,
// on CUDA cores in fp32 (the fallback and the fp32-input path; bf16 inputs take
// gdn_chunk_bwd_bf16_kernel).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) gdn_chunk_bwd_kernel(GdnParams p) {
  constexpr int LD = kChunkLd<D>, LC = kChunkLc;
  extern __shared__ float smem[];
  float* s_k = smem;             // [C][LD] K
  float* s_dw = s_k + kC * LD;   // [C][LD] dW = -dU S^T
  float* s_kk = s_dw + kC * LD;  // [C][LC] K K^T
  float* s_a = s_kk + kC * LC;   // [C][LC] A = (I + L)^-1
  float* s_x1 = s_a + kC * LC;   // [C][LC] dP, dP * R, dA, dL, F = dL * R
  float* s_x2 = s_x1 + kC * LC;  // [C][LC] A^T dA
  const detail::ChunkBwdScalars sc(s_x2 + kC * LC);
  float* s_red = sc.rs + kC;             // [C * D / 32] row-sum scratch
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
  const float* u = detail::as_f32(p.u) + chunk * kC * D;
  const float* du = detail::as_f32(p.grad_u) + chunk * kC * D;
  const float* st = detail::as_f32(p.chunk_states) + chunk * D * D;        // S: [K][V]
  const float* dst = detail::as_f32(p.grad_chunk_states) + chunk * D * D;  // dS: [K][V]
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
    s_a[i * LC + j] = detail::as_f32(p.a_inv)[chunk * kC * kC + idx];
  }
  if (tid < kC) {
    sc.load_gates(p, b, h, t0, n_valid, chunk, tid);
    sc.db[tid] = 0.f;
  }
  __syncthreads();
  auto decay_ratio = [&](int i, int j) { return i >= j ? __expf(sc.g[i] - sc.g[j]) : 0.f; };

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
      [&](int vv, int j) { return st[j * D + vv]; });
#pragma unroll
  for (int r = 0; r < dq.kRegs; ++r) {
    dq.x[r] *= scale * sc.gamma[dq.row(r)];
    tmp.x[r] = dq.x[r] * in(q, dq.row(r), dq.col(r));
  }
  row_sum(tmp, s_red, sc.dg, /*accumulate=*/false);
  {  // dW = -dU S^T
    tmp.fill(0.f);
    tmp.mma_rows(
        n_valid, D, [&](int i, int vv) { return -du[i * D + vv]; },
        [&](int vv, int j) { return st[j * D + vv]; });
#pragma unroll
    for (int r = 0; r < tmp.kRegs; ++r) s_dw[tmp.row(r) * LD + tmp.col(r)] = tmp.x[r];
  }
  // dk = diag(decay) U dS^T; e_i = rowsum(k * that).
  dk.fill(0.f);
  dk.mma_rows(
      n_valid, D, [&](int i, int vv) { return u[i * D + vv]; },
      [&](int vv, int j) { return dst[j * D + vv]; });
#pragma unroll
  for (int r = 0; r < dk.kRegs; ++r) {
    dk.x[r] *= sc.decay[dk.row(r)];
    tmp.x[r] = dk.x[r] * s_k[dk.row(r) * LD + dk.col(r)];
  }
  row_sum(tmp, s_red, sc.e, /*accumulate=*/false);  // also orders s_dw and s_kk before use
  {                                                 // dP = lower_incl(dO U^T)
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
    const float* attn = detail::as_f32(p.attn) + chunk * kC * kC;
    float s = 0.f;
    for (int j = 0; j < n_valid; ++j) {
      s += __ldg(attn + tid * kC + j) * s_x1[tid * LC + j] -
           __ldg(attn + j * kC + tid) * s_x1[j * LC + tid];
    }
    sc.dg[tid] += s;
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
      s_x1[f1.row(r) * LC + j] = sc.beta[j] * (sc.gamma[j] * f1.x[r] + f2.x[r]);
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
      const float l_ij = j < i ? sc.beta[i] * s_kk[i * LC + j] * decay_ratio(i, j) : 0.f;
      const float l_ji = i < j ? sc.beta[j] * s_kk[j * LC + i] * decay_ratio(j, i) : 0.f;
      s += l_ij * s_x1[i * LC + j] - l_ji * s_x1[j * LC + i];
    }
    sc.dg[i] += s;
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
      dk.x[r] += sc.beta[i] * sc.gamma[i] * tmp.x[r];
      tmp.x[r] *= sc.gamma[i] * s_k[i * LD + tmp.col(r)];
    }
    row_sum(tmp, s_red, sc.rs, /*accumulate=*/false);
    if (tid < kC) {
      sc.db[tid] += sc.rs[tid];
      sc.dg[tid] += sc.beta[tid] * sc.rs[tid];
    }
  }
  {  // dk += diag(beta) F K + F^T diag(beta) K;  dbeta += rowsum(F * K K^T)
    tmp.fill(0.f);
    tmp.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_x1[i * LC + l]; },
        [&](int l, int j) { return s_k[l * LD + j]; });
#pragma unroll
    for (int r = 0; r < tmp.kRegs; ++r) dk.x[r] += sc.beta[tmp.row(r)] * tmp.x[r];
    dk.mma_rows(
        n_valid, depth, [&](int i, int l) { return s_x1[l * LC + i]; },
        [&](int l, int j) { return sc.beta[l] * s_k[l * LD + j]; });
    if (tid < kC) {
      float s = 0.f;
      for (int j = 0; j < n_valid; ++j) s += s_x1[tid * LC + j] * s_kk[tid * LC + j];
      sc.db[tid] += s;
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
      if (i < n_valid) dv[i * row_stride + j] = detail::from_float<T>(sc.beta[i] * tmp.x[r]);
      tmp.x[r] *= in(v, i, j);
    }
    row_sum(tmp, s_red, sc.rs, /*accumulate=*/false);
    if (tid < kC) sc.db[tid] += sc.rs[tid];
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
  float part = 0.f;
  for (int idx = tid; idx < D * D; idx += kThreads) part += st[idx] * dst[idx];
  const float state_dot = detail::block_sum<kThreads>(part, s_blk);
  detail::finish_gate_grads(p, b, h, t0, n_valid, state_dot, sc);
}

constexpr int kBwdSlice = 32;

/// The CUDA-core reverse scan and chunk kernel in fp32 (fp32 inputs, or bf16 with
/// GdnKernel::kFp32).
template <int D, typename T>
cudaError_t launch_bwd(const GdnParams& p, cudaStream_t stream, detail::CudaCoreKernels) {
  const unsigned bh = unsigned(p.batch * p.heads);
  const cudaError_t err =
      detail::launch_with_smem(gdn_chunk_bwd_scan_kernel<T, D, kBwdSlice>, dim3(D / kBwdSlice, bh),
                               kThreads, bwd_scan_smem_bytes<D, kBwdSlice>(), stream, p);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_bwd_kernel<T, D>, dim3(unsigned(p.n_chunks()), bh),
                                  kThreads, bwd_chunk_smem_bytes<D>(), stream, p);
}

/// The tensor-core reverse scan and chunk kernel (bf16 inputs).
template <int D, typename T>
cudaError_t launch_bwd(const GdnParams& p, cudaStream_t stream, detail::TensorCoreKernels) {
  static_assert(std::is_same_v<T, __nv_bfloat16>, "the tensor-core kernels take bf16 inputs");
  const cudaError_t err = detail::launch_gdn_chunk_bwd_scan_tc(p, stream);
  if (err != cudaSuccess) return err;
  return detail::launch_gdn_chunk_bwd_tc(p, stream);
}

}  // namespace

cudaError_t gdn_chunk_bwd(const GdnParams& p, cudaStream_t stream) {
  if (!detail::sizes_supported(p) || !detail::backward_pointers_set(p)) {
    return cudaErrorInvalidValue;
  }
  return detail::dispatch(p, [&](auto dims, auto element, auto family) {
    return launch_bwd<detail::square_dim<decltype(dims)>(), decltype(element)>(p, stream, family);
  });
}

}  // namespace hypnos::kernels
