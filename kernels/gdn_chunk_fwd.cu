// Forward of the chunked gated delta rule: a chunk-parallel prep kernel (cumsum, K K^T, the
// unit-lower inverse by forward substitution in registers, W, Ut, P) and a scan over chunks per
// (sequence, head, V-slice) that carries the fp32 state in shared memory and writes the output in
// the same pass.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_mma.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using detail::Frag;
using detail::kC;
using detail::kThreads;
using detail::load;
using detail::load_pair;
using detail::row_depth;
using detail::store_pair;

/// Row strides of the prep kernel's tiles: odd for the CUDA-core path (column walks hit distinct
/// banks), 8 mod 32 for the tensor-core path (row-major and transposed fragment reads, bank
/// 8 * row + column, hit 32 distinct banks).
template <int D, bool kTc>
inline constexpr int kPrepLd = kTc ? D + 8 : D + 1;
template <bool kTc>
inline constexpr int kPrepLc = kTc ? kC + 8 : kC + 1;

template <int D, bool kTc>
constexpr size_t prep_smem_bytes() {
  return sizeof(float) * (2 * kC * kPrepLd<D, kTc> + 2 * kC * kPrepLc<kTc> + 3 * kC);
}

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
  static_assert(kThreads >= kB * kB, "t[] holds one element per thread and block of a level");
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
  for (int dist = 1; dist < live_blocks; ++dist) {
    // This thread's elements of the level's blocks (i, i - dist), i = dist .. live_blocks - 1:
    // f(e, bi, bj, r, c) for its e-th element, at row r and column c of block (bi, bj).
    const int n_elems = (live_blocks - dist) * kB * kB;
    auto for_each_element = [&](auto f) {
#pragma unroll
      for (int e = 0; e < kBlocks - 1; ++e) {
        const int idx = tid + e * kThreads;
        if (idx >= n_elems) break;
        const int bi = dist + idx / (kB * kB), bj = bi - dist;
        f(e, bi, bj, bi * kB + (idx / kB) % kB, bj * kB + idx % kB);
      }
    };
    float t[kBlocks - 1];
    auto store_t = [&](int e, int, int, int r, int c) { s_a[r * LC + c] = t[e]; };
    // T_ij = sum_k L_ik A_kj, written in place of A_ij (zero until now).
    for_each_element([&](int e, int bi, int bj, int r, int c) {
      float sum = 0.f;
      for (int m = bj * kB; m < bi * kB; ++m) sum = fmaf(s_l[r * LC + m], s_a[m * LC + c], sum);
      t[e] = sum;
    });
    __syncthreads();
    for_each_element(store_t);
    __syncthreads();
    // A_ij = -A_ii T_ij (A_ii lower triangular with a unit diagonal).
    for_each_element([&](int e, int bi, int, int r, int c) {
      float sum = s_a[r * LC + c];
      for (int m = bi * kB; m < r; ++m) sum = fmaf(s_a[r * LC + m], s_a[m * LC + c], sum);
      t[e] = -sum;
    });
    __syncthreads();
    for_each_element(store_t);
    __syncthreads();
  }
}

// grid (NC, B*H). Writes g_cum, w, u_tilde, attn and (for a backward) a_inv of one chunk. kTc: K
// K^T, Q K^T, W = A Z and Ut = A Y on tensor cores (mma.sync m16n8k8 tf32); the inverse A stays an
// fp32 forward substitution (of the identity only, instead of [Z | Y | I]). The occupancy hint
// (2 CTAs per SM on tensor cores, none otherwise) keeps ptxas from capping the D = 64 kernel at 64
// registers and spilling.
template <typename T, int D, bool kTc>
__global__ void __launch_bounds__(kThreads, kTc ? 2 : 0) gdn_chunk_prep_kernel(GdnParams p) {
  constexpr int LD = kPrepLd<D, kTc>, LC = kPrepLc<kTc>;
  extern __shared__ float smem[];
  float* s_k = smem;           // [C][LD]  k (CUDA cores: then Z = diag(beta gamma) K, then W)
  float* s_v = s_k + kC * LD;  // [C][LD]  v (CUDA cores: then Y = diag(beta) V, then Ut)
  float* s_a = s_v + kC * LD;  // [C][LC]  I, then A = (I + L)^-1
  float* s_l = s_a + kC * LC;  // [C][LC]  L
  float* s_g = s_l + kC * LC;  // [C]      G (within-chunk cumsum of g)
  float* s_beta = s_g + kC;    // [C]
  float* s_zs = s_beta + kC;   // [C]      beta exp(G): the row scale of Z (tensor cores)

  const int n = blockIdx.x;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), t0 = int64_t(n) * kC;
  const int n_valid = int(p.seq_len - t0 < kC ? p.seq_len - t0 : kC);
  const int64_t row_stride = p.heads * D;
  const T* q = static_cast<const T*>(p.q) + detail::token_offset(p, b, t0, h, D);
  const T* k = static_cast<const T*>(p.k) + detail::token_offset(p, b, t0, h, D);
  const T* v = static_cast<const T*>(p.v) + detail::token_offset(p, b, t0, h, D);
  const int tid = threadIdx.x;

  if constexpr (kTc) {  // rows of 16-byte aligned pieces, 8 elements each (LD keeps rows aligned)
    constexpr int kPieces = D / 8;
    for (int idx = tid; idx < kC * kPieces; idx += kThreads) {
      const int i = idx / kPieces, d = (idx % kPieces) * 8;
      float xk[8] = {}, xv[8] = {};
      if (i < n_valid) {
        detail::load8(k + i * row_stride + d, xk);
        detail::load8(v + i * row_stride + d, xv);
      }
      detail::store8(s_k + i * LD + d, xk);
      detail::store8(s_v + i * LD + d, xv);
    }
  } else {
    for (int idx = tid; idx < kC * D; idx += kThreads) {
      const int i = idx / D, d = idx % D;
      const bool ok = i < n_valid;
      s_k[i * LD + d] = ok ? load(k + i * row_stride + d) : 0.f;
      s_v[i * LD + d] = ok ? load(v + i * row_stride + d) : 0.f;
    }
  }
  for (int idx = tid; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    s_a[i * LC + j] = i == j ? 1.f : 0.f;
  }
  if (tid < kC) {
    const bool ok = tid < n_valid;
    const int64_t gi = (b * p.seq_len + t0 + tid) * p.heads + h;
    s_g[tid] = ok ? p.g[gi] : 0.f;
    s_beta[tid] = ok ? p.beta[gi] : 0.f;
  }
  __syncthreads();
  if (tid < 32) {  // inclusive scan of 64 values by one warp, two per lane
    float lo = s_g[2 * tid], hi = s_g[2 * tid + 1];
    float s = lo + hi;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float t = __shfl_up_sync(0xffffffffu, s, o);
      if (tid >= o) s += t;
    }
    s_g[2 * tid + 1] = s;
    s_g[2 * tid] = s - hi;
  }
  __syncthreads();
  const int64_t chunk = bh * n_chunks + n;
  if (tid < kC) {
    p.g_cum[chunk * kC + tid] = s_g[tid];
    s_zs[tid] = s_beta[tid] * __expf(s_g[tid]);
  }

  // K K^T -> L (strictly lower, beta_i exp(G_i - G_j) row/decay scaled); Q K^T -> P.
  auto decay_of = [&](int i, int j) { return i >= j ? __expf(s_g[i] - s_g[j]) : 0.f; };
  auto store_l = [&](int i, int j, float kk, float decay) {
    s_l[i * LC + j] = i > j ? s_beta[i] * kk * decay : 0.f;
  };
  auto store_l_and_p = [&](int i, int j, float kk, float qk) {
    const float decay = decay_of(i, j);
    store_l(i, j, kk, decay);
    p.attn[(chunk * kC + i) * kC + j] = p.scale * qk * decay;
  };
  if constexpr (kTc) {
    // 8 warps: rows [16 (w % 4), +16), columns [32 (w / 4), +32) of both C x C products.
    constexpr int kNT = 4;
    using Tiling = mma::WarpTiling<1, kNT>;
    const int warp = tid / 32, lane = tid % 32, r0 = (warp % 4) * 16, c0 = (warp / 4) * 32;
    float kk[kNT][4] = {}, qk[kNT][4] = {};
    auto kt = [&](int d, int j) { return s_k[(c0 + j) * LD + d]; };
    if (r0 < n_valid) {  // rows past the tokens: K and Q rows are zero, so are L's and P's
      mma::warp_mma_tf32<kNT>(
          kk, lane, 0, D / 8, [&](int i, int d) { return s_k[(r0 + i) * LD + d]; }, kt);
      mma::warp_mma_tf32_pairs<kNT>(
          qk, lane, 0, D / 8,
          [&](int i, int d) {
            return r0 + i < n_valid ? load_pair(q + (r0 + i) * row_stride + d) : float2{};
          },
          [&](int d, int j) { return *reinterpret_cast<const float2*>(s_k + (c0 + j) * LD + d); });
    }
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int r = 0; r < 4; r += 2) {  // registers r, r + 1: columns j, j + 1 of row i
        const int i = r0 + Tiling::row(0, 0, lane, r), j = c0 + Tiling::col(nt, lane, r);
        const float decay0 = decay_of(i, j), decay1 = decay_of(i, j + 1);
        store_l(i, j, kk[nt][r], decay0);
        store_l(i, j + 1, kk[nt][r + 1], decay1);
        store_pair(p.attn + (chunk * kC + i) * kC + j, p.scale * qk[nt][r] * decay0,
                   p.scale * qk[nt][r + 1] * decay1);
      }
    }
  } else {
    Frag<kC, kC> kk, qk;
    kk.fill(0.f);
    qk.fill(0.f);
    auto kt = [&](int d, int j) { return s_k[j * LD + d]; };
    kk.mma(
        D, [&](int i, int d) { return s_k[i * LD + d]; }, kt);
    qk.mma(
        D, [&](int i, int d) { return i < n_valid ? load(q + i * row_stride + d) : 0.f; }, kt);
#pragma unroll
    for (int r = 0; r < kk.kRegs; ++r) store_l_and_p(kk.row(r), kk.col(), kk.x[r], qk.x[r]);
  }
  __syncthreads();
  if constexpr (!kTc) {  // Z and Y in place (on tensor cores the row scales go into A's columns)
    for (int idx = tid; idx < kC * D; idx += kThreads) {
      const int i = idx / D, d = idx % D;
      s_k[i * LD + d] *= s_zs[i];
      s_v[i * LD + d] *= s_beta[i];
    }
    __syncthreads();
  }
  // CUDA cores: (I + L) X = [Z | Y | I] by forward substitution, one column per thread, column in
  // registers. Tensor cores: only X = A, by 16 x 16 blocks (below), and W, Ut are products.
  // Past the tokens L's rows are zero: those rows of X are the right-hand side's, and an identity
  // column e_c with c past the tokens solves itself.
  if constexpr (kTc) {
    invert_unit_lower<LC>(s_l, s_a, n_valid, tid);
  } else {
    for (int c = tid; c < 2 * D + kC; c += kThreads) {
      if (c >= 2 * D + n_valid) continue;
      float* col = c < D ? s_k + c : c < 2 * D ? s_v + (c - D) : s_a + (c - 2 * D);
      const int ld = c < 2 * D ? LD : LC;
      float x[kC];
#pragma unroll
      for (int i = 0; i < kC; ++i) x[i] = col[i * ld];
#pragma unroll
      for (int i = 1; i < kC; ++i) {
        if (i >= n_valid) break;
        float s = x[i];
#pragma unroll
        for (int j = 0; j < i; ++j) s = fmaf(-s_l[i * LC + j], x[j], s);
        x[i] = s;
      }
#pragma unroll
      for (int i = 0; i < kC; ++i) col[i * ld] = x[i];
    }
  }
  __syncthreads();
  if constexpr (kTc) {
    mma::TcFrag<kC, D, kThreads> w, ut;
    w.fill(0.f);
    ut.fill(0.f);
    // W = A diag(beta gamma) K and Ut = A diag(beta) V: the row scales of Z and Y as column scales
    // of A. Rows of A past the tokens are identity rows against zero rows of K and V (and zero
    // scales): zero rows of W, Ut.
    w.mma_rows(
        n_valid, row_depth(n_valid), [&](int i, int l) { return s_a[i * LC + l] * s_zs[l]; },
        [&](int l, int d) { return s_k[l * LD + d]; });
    ut.mma_rows(
        n_valid, row_depth(n_valid), [&](int i, int l) { return s_a[i * LC + l] * s_beta[l]; },
        [&](int l, int d) { return s_v[l * LD + d]; });
#pragma unroll
    for (int r = 0; r < w.kRegs; r += 2) {  // registers r, r + 1: adjacent columns
      const int64_t at = (chunk * kC + w.row(r)) * D + w.col(r);
      store_pair(p.w + at, w.x[r], w.x[r + 1]);
      store_pair(p.u_tilde + at, ut.x[r], ut.x[r + 1]);
    }
  } else {
    for (int idx = tid; idx < kC * D; idx += kThreads) {
      const int i = idx / D, d = idx % D;
      p.w[(chunk * kC + i) * D + d] = s_k[i * LD + d];
      p.u_tilde[(chunk * kC + i) * D + d] = s_v[i * LD + d];
    }
  }
  if (p.a_inv == nullptr) return;  // no backward follows: A is not needed again
  for (int idx = tid; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    p.a_inv[(chunk * kC + i) * kC + j] = s_a[i * LC + j];
  }
}

template <int D, int BV>
constexpr size_t scan_smem_bytes() {
  return sizeof(float) * (D * (BV + 1) + kC * (BV + 1) + 2 * kC);
}

// grid (D / BV, B*H). The state slice S[:, v0:v0+BV] lives in shared memory across all chunks.
template <typename T, int D, int BV>
__global__ void __launch_bounds__(kThreads) gdn_chunk_fwd_kernel(GdnParams p) {
  constexpr int LS = BV + 1;
  extern __shared__ float smem[];
  float* s_state = smem;           // [D][LS]  S (k rows, v columns of this slice)
  float* s_u = s_state + D * LS;   // [C][LS]  U
  float* s_gamma = s_u + kC * LS;  // [C]      exp(G_i)
  float* s_decay = s_gamma + kC;   // [C]      exp(G_C - G_i)

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), row_stride = p.heads * D;
  const int tid = threadIdx.x;

  for (int idx = tid; idx < D * BV; idx += kThreads) {
    const int d = idx / BV, j = idx % BV;
    s_state[d * LS + j] = p.initial_state ? p.initial_state[(bh * D + d) * D + v0 + j] : 0.f;
  }
  __syncthreads();  // the chunk loop reads the whole slice, written by other threads
  for (int64_t n = 0; n < n_chunks; ++n) {
    const int64_t t0 = n * kC, chunk = bh * n_chunks + n;
    const int n_valid = int(p.seq_len - t0 < kC ? p.seq_len - t0 : kC);
    const T* q = static_cast<const T*>(p.q) + detail::token_offset(p, b, t0, h, D);
    const T* k = static_cast<const T*>(p.k) + detail::token_offset(p, b, t0, h, D);
    T* o = static_cast<T*>(p.o) + detail::token_offset(p, b, t0, h, D);
    const float* w = p.w + chunk * kC * D;
    const float* ut = p.u_tilde + chunk * kC * D;
    const float* attn = p.attn + chunk * kC * kC;
    if (tid < kC) {
      const float g_last = p.g_cum[chunk * kC + kC - 1], g_i = p.g_cum[chunk * kC + tid];
      s_gamma[tid] = __expf(g_i);
      s_decay[tid] = __expf(g_last - g_i);
    }
    if (p.chunk_states) {
      float* st = p.chunk_states + chunk * D * D;
      for (int idx = tid; idx < D * BV; idx += kThreads) {
        const int d = idx % D,
                  j = idx / D;  // consecutive threads walk k: coalesced transposed store
        st[(v0 + j) * D + d] = s_state[d * LS + j];
      }
    }
    __syncthreads();
    auto state = [&](int d, int j) { return s_state[d * LS + j]; };
    Frag<kC, BV> fu;  // U = Ut - W S
#pragma unroll
    for (int r = 0; r < fu.kRegs; ++r) fu.x[r] = ut[fu.row(r) * D + v0 + fu.col()];
    fu.mma(
        D, [&](int i, int d) { return -w[i * D + d]; }, state);
#pragma unroll
    for (int r = 0; r < fu.kRegs; ++r) {
      s_u[fu.row(r) * LS + fu.col()] = fu.x[r];
      if (p.u) p.u[(chunk * kC + fu.row(r)) * D + v0 + fu.col()] = fu.x[r];
    }
    __syncthreads();
    Frag<kC, BV> fo;  // O = scale diag(gamma) Q S + P U
    fo.fill(0.f);
    fo.mma(
        D, [&](int i, int d) { return i < n_valid ? load(q + i * row_stride + d) : 0.f; }, state);
#pragma unroll
    for (int r = 0; r < fo.kRegs; ++r) fo.x[r] *= p.scale * s_gamma[fo.row(r)];
    fo.mma(
        kC, [&](int i, int m) { return attn[i * kC + m]; },
        [&](int m, int j) { return s_u[m * LS + j]; });
#pragma unroll
    for (int r = 0; r < fo.kRegs; ++r) {
      if (fo.row(r) < n_valid) {
        o[fo.row(r) * row_stride + v0 + fo.col()] = detail::from_float<T>(fo.x[r]);
      }
    }
    Frag<D, BV> fs;  // S <- gamma_C S + K^T diag(decay) U
    const float gamma_last = s_gamma[kC - 1];
#pragma unroll
    for (int r = 0; r < fs.kRegs; ++r) fs.x[r] = gamma_last * s_state[fs.row(r) * LS + fs.col()];
    fs.mma(
        kC,
        [&](int d, int i) { return i < n_valid ? s_decay[i] * load(k + i * row_stride + d) : 0.f; },
        [&](int i, int j) { return s_u[i * LS + j]; });
    __syncthreads();
#pragma unroll
    for (int r = 0; r < fs.kRegs; ++r) s_state[fs.row(r) * LS + fs.col()] = fs.x[r];
    __syncthreads();
  }
  if (p.final_state) {
    for (int idx = tid; idx < D * BV; idx += kThreads) {
      const int d = idx / BV, j = idx % BV;
      p.final_state[(bh * D + d) * D + v0 + j] = s_state[d * LS + j];
    }
  }
}

constexpr int kFwdSlice = 32;

template <typename T, int D>
cudaError_t launch_fwd(const GdnParams& p, cudaStream_t stream) {
  const unsigned bh = unsigned(p.batch * p.heads);
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  const bool tc = kBf16 && p.kernel == GdnKernel::kTensorCore;
  const dim3 prep_grid(unsigned(p.n_chunks()), bh);
  cudaError_t err = tc ? detail::launch_with_smem(gdn_chunk_prep_kernel<T, D, kBf16>, prep_grid,
                                                  kThreads, prep_smem_bytes<D, kBf16>(), stream, p)
                       : detail::launch_with_smem(gdn_chunk_prep_kernel<T, D, false>, prep_grid,
                                                  kThreads, prep_smem_bytes<D, false>(), stream, p);
  if (err != cudaSuccess) return err;
  if (tc) return detail::launch_gdn_chunk_fwd_scan_tc(p, stream);
  return detail::launch_with_smem(gdn_chunk_fwd_kernel<T, D, kFwdSlice>, dim3(D / kFwdSlice, bh),
                                  kThreads, scan_smem_bytes<D, kFwdSlice>(), stream, p);
}

}  // namespace

cudaError_t gdn_chunk_fwd(const GdnParams& p, cudaStream_t stream) {
  if (p.head_dim_k != p.head_dim_v || (p.head_dim_k != 64 && p.head_dim_k != 128)) {
    return cudaErrorInvalidValue;
  }
  if (p.batch <= 0 || p.seq_len <= 0 || p.heads <= 0 || p.batch * p.heads > 65535) {
    return cudaErrorInvalidValue;
  }
  if (p.scan_slice != 0 && p.scan_slice != 32 && p.scan_slice != 64) return cudaErrorInvalidValue;
  if (!p.q || !p.k || !p.v || !p.g || !p.beta || !p.o || !p.g_cum || !p.w || !p.u_tilde ||
      !p.attn || (p.u == nullptr) != (p.chunk_states == nullptr) ||
      (p.u != nullptr && p.a_inv == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const bool bf16 = p.dtype == GdnDtype::kBFloat16;
  if (p.head_dim_k == 64) {
    return bf16 ? launch_fwd<__nv_bfloat16, 64>(p, stream) : launch_fwd<float, 64>(p, stream);
  }
  return bf16 ? launch_fwd<__nv_bfloat16, 128>(p, stream) : launch_fwd<float, 128>(p, stream);
}

}  // namespace hypnos::kernels
