// The two sequential scans of the gated delta rule on bf16 tensor cores (KERNELS.md sections 2 and
// 3): the forward over chunks carrying the state S, and the backward in reverse carrying dS. One
// CTA walks every chunk of one (sequence, head) for a BV-column slice of the state, which it keeps
// in fp32 registers (accumulator layout); each chunk's operands (W, Q, K, P, and dO for the
// backward) are staged once in shared memory as bf16 with 16-byte loads, and every product is
// mma.sync m16n8k16 with ldmatrix operands, the state entering as a bf16 copy (as fla does).
#include <cuda_bf16.h>

#include <cstdint>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_mma_bf16.cuh"
#include "gdn_stage.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using bf16 = __nv_bfloat16;
using detail::kC;
using mma::rows_of;
using mma::transpose_of;
using Acc = mma::M16N8K8;  // accumulator layout (the same for m16n8k16)

/// Shared memory of both scans (bf16 strides 8 past the row: conflict-free ldmatrix). W, Q, K
/// ([C][D]) and P ([C][C]) of the chunk; the state (or dS) slice [D][BV] as the B operand; three
/// [C][BV] tiles (forward: U, diag(decay) U; backward: dO, scale diag(gamma) dO, -dU).
template <int D, int BV>
struct ScanLayout {
  static constexpr int kLd = D + 8, kLc = kC + 8, kLs = BV + 8;
  static constexpr int kFloats = 2 * kC;  // gamma, decay
  static constexpr int kHalves = 3 * kC * kLd + kC * kLc + D * kLs + 3 * kC * kLs;
  static constexpr size_t kBytes = sizeof(float) * kFloats + sizeof(bf16) * kHalves;
};

/// The warp split of a CTA of BV / 8 warps: warp w owns rows [16 (w % 4), + 16) of the C x BV
/// products (U, O, dU) and rows [(w % 4) D / 4, + D / 4) of the D x BV state, in both cases the 32
/// slice columns [32 (w / 4), + 32).
template <int D>
struct ScanWarp {
  static constexpr int kStateMT = D / 64;  // 16-row tiles of the state per warp
  int lane, r0, d0, c0;
  __device__ ScanWarp() {
    const int warp = threadIdx.x / 32;
    lane = threadIdx.x % 32;
    r0 = (warp % 4) * 16;
    d0 = (warp % 4) * (D / 4);
    c0 = (warp / 4) * 32;
  }
  /// f(row, column, register) for the 4 n-tiles x 4 registers of a 16-row tile at row `row0`.
  template <class F>
  __device__ __forceinline__ void each(int row0, float (&x)[4][4], F f) const {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int r = 0; r < 4; ++r)
        f(row0 + Acc::c_row(lane, r), c0 + nt * 8 + Acc::c_col(lane, r), x[nt][r]);
    }
  }
  /// Register pairs (r, r + 1: columns j, j + 1 of one row): f(row, column, x[r], x[r + 1]).
  template <class F>
  __device__ __forceinline__ void each_pair(int row0, float (&x)[4][4], F f) const {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int r = 0; r < 4; r += 2) {
        f(row0 + Acc::c_row(lane, r), c0 + nt * 8 + Acc::c_col(lane, r), x[nt][r], x[nt][r + 1]);
      }
    }
  }
};

/// Stages one chunk's W, Q, K (rows past the tokens zero) and P as bf16, and gamma, decay.
template <int D, int BV>
__device__ __forceinline__ void stage_chunk(const GdnParams& p, int64_t chunk, const bf16* q,
                                            const bf16* k, int n_valid, bf16* s_w, bf16* s_q,
                                            bf16* s_k, bf16* s_p, float* s_gamma, float* s_decay) {
  using L = ScanLayout<D, BV>;
  constexpr int NT = BV * 4;
  const int64_t row_stride = p.heads * D;
  detail::stage_bf16<kC, D, NT>(s_w, L::kLd, detail::as_bf16(p.w) + chunk * kC * D, D, n_valid);
  detail::stage_bf16<kC, D, NT>(s_q, L::kLd, q, row_stride, n_valid);
  detail::stage_bf16<kC, D, NT>(s_k, L::kLd, k, row_stride, n_valid);
  detail::stage_bf16<kC, kC, NT>(s_p, L::kLc, detail::as_bf16(p.attn) + chunk * kC * kC, kC,
                                 n_valid);
  if (threadIdx.x < kC) {
    const float g_last = p.g_cum[chunk * kC + kC - 1], g_i = p.g_cum[chunk * kC + threadIdx.x];
    s_gamma[threadIdx.x] = __expf(g_i);
    s_decay[threadIdx.x] = __expf(g_last - g_i);
  }
}

// grid (D / BV, B*H), BV * 4 threads. Per chunk: U = Ut - W S; O = scale diag(gamma) Q S + P U;
// S <- gamma_C S + K^T diag(decay) U. Writes o, the final state and, for a backward, U and the
// state entering each chunk, both in bf16 as the MMAs used them. Rows past the
// tokens: U = 0, no output, and the warps that own only such rows skip their products (a 24-token
// window does 2 of 4).
template <int D, int BV>
__global__ void __launch_bounds__(BV * 4) gdn_chunk_fwd_scan_tc_kernel(GdnParams p) {
  using L = ScanLayout<D, BV>;
  constexpr int NT = BV * 4, LD = L::kLd, LC = L::kLc, LS = L::kLs, kMT = ScanWarp<D>::kStateMT;
  extern __shared__ float smem[];
  float* s_gamma = smem;          // [C] exp(G_i)
  float* s_decay = s_gamma + kC;  // [C] exp(G_C - G_i)
  bf16* s_w = reinterpret_cast<bf16*>(s_decay + kC);
  bf16* s_q = s_w + kC * LD;
  bf16* s_k = s_q + kC * LD;
  bf16* s_p = s_k + kC * LD;   // [C][LC]
  bf16* s_s = s_p + kC * LC;   // [D][LS] the state slice
  bf16* s_u = s_s + D * LS;    // [C][LS] U
  bf16* s_ud = s_u + kC * LS;  // [C][LS] diag(decay) U

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), row_stride = p.heads * D;
  const ScanWarp<D> wp;

  float st[kMT][4][4];  // S[d0 + 16 mt + .., v0 + c0 + ..] in fp32
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
    wp.each(wp.d0 + 16 * mt, st[mt], [&](int d, int j, float& x) {
      x = p.initial_state ? p.initial_state[(bh * D + d) * D + v0 + j] : 0.f;
    });
    wp.each_pair(wp.d0 + 16 * mt, st[mt], [&](int d, int j, float x0, float x1) {
      detail::store_bf16_pair(s_s + d * LS + j, x0, x1);
    });
  }
  for (int64_t n = 0; n < n_chunks; ++n) {
    const int64_t t0 = n * kC, chunk = bh * n_chunks + n;
    const int n_valid = int(p.seq_len - t0 < kC ? p.seq_len - t0 : kC);
    const int depth = (n_valid + 15) & ~15;
    const bf16* q = static_cast<const bf16*>(p.q) + detail::token_offset(p, b, t0, h, D);
    const bf16* k = static_cast<const bf16*>(p.k) + detail::token_offset(p, b, t0, h, D);
    bf16* o = static_cast<bf16*>(p.o) + detail::token_offset(p, b, t0, h, D);
    const float* ut = p.u_tilde + chunk * kC * D + v0;
    stage_chunk<D, BV>(p, chunk, q, k, n_valid, s_w, s_q, s_k, s_p, s_gamma, s_decay);
    __syncthreads();       // the staged chunk and the state copy are complete
    if (p.chunk_states) {  // the state entering the chunk (its bf16 copy)
      detail::store_rows<D, BV, NT>(detail::as_bf16(p.chunk_states) + chunk * D * D + v0, D, s_s,
                                    LS, /*negate=*/false);
    }
    const bool has_tokens = wp.r0 < n_valid;
    {  // U = Ut - W S
      float acc[4][4] = {};
      if (has_tokens) {
        mma::warp_mma_bf16<4>(acc, wp.lane, wp.r0, wp.c0, 0, D, rows_of(s_w, LD), rows_of(s_s, LS));
      }
      wp.each_pair(wp.r0, acc, [&](int i, int j, float a0, float a1) {
        float2 u = {0.f, 0.f};
        if (has_tokens) {
          const float2 t = __ldg(reinterpret_cast<const float2*>(ut + i * D + j));
          u.x = t.x - a0;
          u.y = t.y - a1;
        }
        detail::store_bf16_pair(s_u + i * LS + j, u.x, u.y);
        detail::store_bf16_pair(s_ud + i * LS + j, s_decay[i] * u.x, s_decay[i] * u.y);
      });
    }
    __syncthreads();  // U is complete
    if (p.u) {
      detail::store_rows<kC, BV, NT>(detail::as_bf16(p.u) + chunk * kC * D + v0, D, s_u, LS,
                                     /*negate=*/false);
    }
    if (has_tokens) {  // O = scale diag(gamma) Q S + P U (P is lower triangular)
      float acc[4][4] = {};
      mma::warp_mma_bf16<4>(acc, wp.lane, wp.r0, wp.c0, 0, D, rows_of(s_q, LD), rows_of(s_s, LS));
      wp.each(wp.r0, acc, [&](int i, int, float& x) { x *= p.scale * s_gamma[i]; });
      mma::warp_mma_bf16<4>(acc, wp.lane, wp.r0, wp.c0, 0, min(wp.r0 + 16, depth), rows_of(s_p, LC),
                            rows_of(s_u, LS));
      wp.each_pair(wp.r0, acc, [&](int i, int j, float a0, float a1) {
        if (i < n_valid) detail::store_bf16_pair(o + i * row_stride + v0 + j, a0, a1);
      });
    }
    {  // S <- gamma_C S + K^T diag(decay) U
      const float gamma_last = s_gamma[kC - 1];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        wp.each(wp.d0 + 16 * mt, st[mt], [&](int, int, float& x) { x *= gamma_last; });
        mma::warp_mma_bf16<4>(st[mt], wp.lane, wp.d0 + 16 * mt, wp.c0, 0, depth,
                              transpose_of(s_k, LD), rows_of(s_ud, LS));
      }
    }
    __syncthreads();  // every warp is done with this chunk's tiles and the state copy
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      wp.each_pair(wp.d0 + 16 * mt, st[mt], [&](int d, int j, float x0, float x1) {
        detail::store_bf16_pair(s_s + d * LS + j, x0, x1);
      });
    }
    // The next chunk's first barrier orders these writes before any read.
  }
  if (p.final_state) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      wp.each(wp.d0 + 16 * mt, st[mt],
              [&](int d, int j, float& x) { p.final_state[(bh * D + d) * D + v0 + j] = x; });
    }
  }
}

// grid (D / BV, B*H), BV * 4 threads. Reverse over chunks: dU = P^T dO + diag(decay) K dS;
// dS <- gamma_C dS + Q^T (scale diag(gamma) dO) - W^T dU. Writes dU and dS leaving each chunk in
// bf16, and d(initial state).
template <int D, int BV>
__global__ void __launch_bounds__(BV * 4) gdn_chunk_bwd_scan_tc_kernel(GdnParams p) {
  using L = ScanLayout<D, BV>;
  constexpr int NT = BV * 4, LD = L::kLd, LC = L::kLc, LS = L::kLs, kMT = ScanWarp<D>::kStateMT;
  extern __shared__ float smem[];
  float* s_gamma = smem;
  float* s_decay = s_gamma + kC;
  bf16* s_w = reinterpret_cast<bf16*>(s_decay + kC);
  bf16* s_q = s_w + kC * LD;
  bf16* s_k = s_q + kC * LD;
  bf16* s_p = s_k + kC * LD;      // [C][LC]
  bf16* s_ds = s_p + kC * LC;     // [D][LS] the dS slice
  bf16* s_do = s_ds + D * LS;     // [C][LS] dO
  bf16* s_dog = s_do + kC * LS;   // [C][LS] scale diag(gamma) dO
  bf16* s_dun = s_dog + kC * LS;  // [C][LS] -dU

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), row_stride = p.heads * D;
  const ScanWarp<D> wp;

  float ds[kMT][4][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
    wp.each(wp.d0 + 16 * mt, ds[mt], [&](int d, int j, float& x) {
      x = p.grad_final_state ? p.grad_final_state[(bh * D + d) * D + v0 + j] : 0.f;
    });
    wp.each_pair(wp.d0 + 16 * mt, ds[mt], [&](int d, int j, float x0, float x1) {
      detail::store_bf16_pair(s_ds + d * LS + j, x0, x1);
    });
  }
  for (int64_t n = n_chunks - 1; n >= 0; --n) {
    const int64_t t0 = n * kC, chunk = bh * n_chunks + n;
    const int n_valid = int(p.seq_len - t0 < kC ? p.seq_len - t0 : kC);
    const int depth = (n_valid + 15) & ~15;
    const bf16* q = static_cast<const bf16*>(p.q) + detail::token_offset(p, b, t0, h, D);
    const bf16* k = static_cast<const bf16*>(p.k) + detail::token_offset(p, b, t0, h, D);
    const bf16* d_o = static_cast<const bf16*>(p.grad_o) + detail::token_offset(p, b, t0, h, D);
    stage_chunk<D, BV>(p, chunk, q, k, n_valid, s_w, s_q, s_k, s_p, s_gamma, s_decay);
    for (int idx = threadIdx.x; idx < kC * (BV / 8); idx += NT) {  // dO and scale gamma dO
      const int i = idx / (BV / 8), c = (idx % (BV / 8)) * 8;
      float x[8] = {};
      if (i < n_valid) detail::load8(d_o + i * row_stride + v0 + c, x);
      *reinterpret_cast<uint4*>(s_do + i * LS + c) = detail::pack8(x);  // exact: bf16 values
      const float s = i < n_valid ? p.scale * __expf(p.g_cum[chunk * kC + i]) : 0.f;
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] *= s;
      *reinterpret_cast<uint4*>(s_dog + i * LS + c) = detail::pack8(x);
    }
    __syncthreads();  // the staged chunk and the dS copy are complete
    // dS leaving this chunk (its bf16 copy)
    detail::store_rows<D, BV, NT>(detail::as_bf16(p.grad_chunk_states) + chunk * D * D + v0, D,
                                  s_ds, LS, /*negate=*/false);
    {  // dU = P^T dO + diag(decay) K dS; P^T is upper triangular: rows i need m >= 16 (i / 16)
      const bool has_tokens = wp.r0 < n_valid;
      float kds[4][4] = {}, du[4][4] = {};
      if (has_tokens) {
        mma::warp_mma_bf16<4>(kds, wp.lane, wp.r0, wp.c0, 0, D, rows_of(s_k, LD),
                              rows_of(s_ds, LS));
        mma::warp_mma_bf16<4>(du, wp.lane, wp.r0, wp.c0, wp.r0, depth, transpose_of(s_p, LC),
                              rows_of(s_do, LS));
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
        for (int r = 0; r < 4; ++r)
          du[nt][r] += s_decay[wp.r0 + Acc::c_row(wp.lane, r)] * kds[nt][r];
      }
      wp.each_pair(wp.r0, du, [&](int i, int j, float x0, float x1) {
        detail::store_bf16_pair(s_dun + i * LS + j, -x0, -x1);
      });
    }
    __syncthreads();  // -dU is complete; every warp is done reading the dS copy
    detail::store_rows<kC, BV, NT>(detail::as_bf16(p.grad_u) + chunk * kC * D + v0, D, s_dun, LS,
                                   /*negate=*/true);
    {  // dS <- gamma_C dS + Q^T (scale diag(gamma) dO) + W^T (-dU)
      const float gamma_last = s_gamma[kC - 1];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        wp.each(wp.d0 + 16 * mt, ds[mt], [&](int, int, float& x) { x *= gamma_last; });
        mma::warp_mma_bf16<4>(ds[mt], wp.lane, wp.d0 + 16 * mt, wp.c0, 0, depth,
                              transpose_of(s_q, LD), rows_of(s_dog, LS));
        mma::warp_mma_bf16<4>(ds[mt], wp.lane, wp.d0 + 16 * mt, wp.c0, 0, depth,
                              transpose_of(s_w, LD), rows_of(s_dun, LS));
      }
    }
    __syncthreads();  // every warp is done with this chunk's tiles
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      wp.each_pair(wp.d0 + 16 * mt, ds[mt], [&](int d, int j, float x0, float x1) {
        detail::store_bf16_pair(s_ds + d * LS + j, x0, x1);
      });
    }
  }
  if (p.grad_initial_state) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      wp.each(wp.d0 + 16 * mt, ds[mt],
              [&](int d, int j, float& x) { p.grad_initial_state[(bh * D + d) * D + v0 + j] = x; });
    }
  }
}

/// The slice width unless params.scan_slice sets it: 64 columns on 8 warps (half as many CTAs
/// re-reading each chunk's W, Q, K, P as with 32 on 4 warps). Measured on an H100 with both forced
/// (bench/RESULTS.md): 64 is faster at 8 x 4096 and 8 x 1024 (x 16 heads, D = 128) and in the
/// sleep regime, and equal at 1 x 16384, where 32 would give twice the CTAs.
int scan_slice(const GdnParams& p) {
  return p.scan_slice == 32 ? 32 : 64;
}

template <int D, int BV>
cudaError_t launch_scan(void (*kernel)(GdnParams), const GdnParams& p, cudaStream_t stream) {
  const cudaError_t err = detail::prefer_max_shared(kernel);  // two CTAs per SM
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(kernel, dim3(D / BV, unsigned(p.batch * p.heads)), BV * 4,
                                  ScanLayout<D, BV>::kBytes, stream, p);
}

}  // namespace

namespace detail {

cudaError_t launch_gdn_chunk_fwd_scan_tc(const GdnParams& p, cudaStream_t stream) {
  const bool wide = scan_slice(p) == 64;
  if (p.head_dim_k == 64) {
    return wide ? launch_scan<64, 64>(gdn_chunk_fwd_scan_tc_kernel<64, 64>, p, stream)
                : launch_scan<64, 32>(gdn_chunk_fwd_scan_tc_kernel<64, 32>, p, stream);
  }
  return wide ? launch_scan<128, 64>(gdn_chunk_fwd_scan_tc_kernel<128, 64>, p, stream)
              : launch_scan<128, 32>(gdn_chunk_fwd_scan_tc_kernel<128, 32>, p, stream);
}

cudaError_t launch_gdn_chunk_bwd_scan_tc(const GdnParams& p, cudaStream_t stream) {
  const bool wide = scan_slice(p) == 64;
  if (p.head_dim_k == 64) {
    return wide ? launch_scan<64, 64>(gdn_chunk_bwd_scan_tc_kernel<64, 64>, p, stream)
                : launch_scan<64, 32>(gdn_chunk_bwd_scan_tc_kernel<64, 32>, p, stream);
  }
  return wide ? launch_scan<128, 64>(gdn_chunk_bwd_scan_tc_kernel<128, 64>, p, stream)
              : launch_scan<128, 32>(gdn_chunk_bwd_scan_tc_kernel<128, 32>, p, stream);
}

}  // namespace detail
}  // namespace hypnos::kernels
