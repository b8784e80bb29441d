// Forward of the chunked gated delta rule: a chunk-parallel prep kernel (cumsum, K K^T, the
// unit-lower inverse, W, Ut, P) and a scan over chunks per (sequence, head, V-slice) that carries
// the fp32 state and writes the output in the same pass. This file holds the entry point and the
// CUDA-core (fp32) prep and scan; bf16 inputs take the tensor-core prep of gdn_chunk_prep_tc.cu
// and scan of gdn_chunk_scan_tc.cu.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_dispatch.cuh"
#include "gdn_prep.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using detail::Frag;
using detail::kC;
using detail::kThreads;
using detail::load;
using detail::PrepGates;

/// Row strides of the CUDA-core prep kernel's fp32 tiles: odd, so column walks hit distinct banks.
template <int D>
inline constexpr int kPrepLd = D + 1;
inline constexpr int kPrepLc = kC + 1;

template <int D>
constexpr size_t prep_smem_bytes() {
  return sizeof(float) * (2 * kC * kPrepLd<D> + 2 * kC * kPrepLc + 3 * kC);
}

/// The chunk's rows of q, k, v (row stride H D) as a prep kernel reads them.
template <typename T, int D>
struct PrepInputs {
  int64_t row_stride;
  const T *q, *k, *v;
  __device__ PrepInputs(const GdnParams& p, int64_t tok)
      : row_stride(p.heads * D),
        q(static_cast<const T*>(p.q) + tok),
        k(static_cast<const T*>(p.k) + tok),
        v(static_cast<const T*>(p.v) + tok) {}
};

// ---- The CUDA-core prep kernel (fp32)

/// The CUDA-core prep kernel's shared memory by what it holds, one name per meaning; names of one
/// space are grouped, in the order prep_smem_bytes<D> counts the spaces.
template <int D>
struct PrepTiles {
  static constexpr int kLd = kPrepLd<D>, kLc = kPrepLc;
  // ---- [C][LD]: K, then Z = diag(beta gamma) K in place, then W = A Z (solved in place)
  float *k, *z, *w;
  // ---- [C][LD]: V, then Y = diag(beta) V in place, then Ut = A Y (solved in place)
  float *v, *y, *ut;
  // ---- [C][LC]: I, then A = (I + L)^-1 (solved in place)
  float* a;
  // ---- [C][LC]: L
  float* l;
  PrepGates gates;  // G, beta, beta exp(G)

  __device__ explicit PrepTiles(float* smem)
      : k(smem),
        z(k),
        w(k),
        v(k + kC * kLd),
        y(v),
        ut(v),
        a(v + kC * kLd),
        l(a + kC * kLc),
        gates(l + kC * kLc) {}
};

/// K and V (rows past the tokens zero) into their tiles, and A = I.
template <typename T, int D>
__device__ __forceinline__ void stage_prep_inputs(const PrepInputs<T, D>& in, int n_valid,
                                                  const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd;
  for (int idx = threadIdx.x; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    const bool ok = i < n_valid;
    t.k[i * LD + d] = ok ? load(in.k + i * in.row_stride + d) : 0.f;
    t.v[i * LD + d] = ok ? load(in.v + i * in.row_stride + d) : 0.f;
  }
  detail::fill_identity<PrepTiles<D>::kLc>(t.a);
}

/// L = strict_lower(diag(beta) K K^T * R) into its tile and P = scale (Q K^T * R) (R_ij =
/// exp(G_i - G_j) on and below the diagonal, 0 above) to attn, both from one pass over K.
template <typename T, int D>
__device__ __forceinline__ void kk_qk_stage(const GdnParams& p, const PrepInputs<T, D>& in,
                                            const detail::ChunkCta& c, const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd, LC = PrepTiles<D>::kLc;
  const int n_valid = c.n_valid;
  Frag<kC, kC> kk, qk;
  kk.fill(0.f);
  qk.fill(0.f);
  auto kt = [&](int d, int j) { return t.k[j * LD + d]; };
  kk.mma(
      D, [&](int i, int d) { return t.k[i * LD + d]; }, kt);
  qk.mma(
      D, [&](int i, int d) { return i < n_valid ? load(in.q + i * in.row_stride + d) : 0.f; }, kt);
#pragma unroll
  for (int r = 0; r < kk.kRegs; ++r) {
    const int i = kk.row(r), j = kk.col();
    const float decay = i >= j ? __expf(t.gates.g[i] - t.gates.g[j]) : 0.f;
    t.l[i * LC + j] = i > j ? t.gates.beta[i] * kk.x[r] * decay : 0.f;
    detail::as_f32(p.attn)[(c.chunk * kC + i) * kC + j] = p.scale * qk.x[r] * decay;
  }
}

/// Z = diag(beta gamma) K and Y = diag(beta) V, in place of K and V.
template <int D>
__device__ __forceinline__ void scale_rows_stage(const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd;
  for (int idx = threadIdx.x; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    t.z[i * LD + d] *= t.gates.zs[i];
    t.y[i * LD + d] *= t.gates.beta[i];
  }
}

/// (I + L) X = [Z | Y | I] by forward substitution, one column per thread: X = [W | Ut | A] in
/// place. Past the tokens L's rows are zero: those rows of X are the right-hand side's, and an
/// identity column e_c with c past the tokens solves itself.
template <int D>
__device__ __forceinline__ void solve_unit_lower_stage(int n_valid, const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd, LC = PrepTiles<D>::kLc;
  for (int c = threadIdx.x; c < 2 * D + kC; c += kThreads) {
    if (c >= 2 * D + n_valid) continue;
    float* col = c < D ? t.z + c : c < 2 * D ? t.y + (c - D) : t.a + (c - 2 * D);
    const int ld = c < 2 * D ? LD : LC;
    float x[kC];
#pragma unroll
    for (int i = 0; i < kC; ++i) x[i] = col[i * ld];
#pragma unroll
    for (int i = 1; i < kC; ++i) {
      if (i >= n_valid) break;
      float s = x[i];
#pragma unroll
      for (int j = 0; j < i; ++j) s = fmaf(-t.l[i * LC + j], x[j], s);
      x[i] = s;
    }
#pragma unroll
    for (int i = 0; i < kC; ++i) col[i * ld] = x[i];
  }
}

/// W and Ut to their workspaces, and A to a_inv when a backward follows (a_inv set).
template <int D>
__device__ __forceinline__ void store_prep_outputs(const GdnParams& p, int64_t chunk,
                                                   const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd, LC = PrepTiles<D>::kLc;
  const int tid = threadIdx.x;
  for (int idx = tid; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    detail::as_f32(p.w)[(chunk * kC + i) * D + d] = t.w[i * LD + d];
    detail::as_f32(p.u_tilde)[(chunk * kC + i) * D + d] = t.ut[i * LD + d];
  }
  if (p.a_inv == nullptr) return;  // no backward follows: A is not needed again
  for (int idx = tid; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    detail::as_f32(p.a_inv)[(chunk * kC + i) * kC + j] = t.a[i * LC + j];
  }
}

// grid (NC, B*H). Writes g_cum, w, u_tilde, attn and (for a backward) a_inv of one chunk, on CUDA
// cores in fp32 (the fallback and the fp32-input path; bf16 inputs take gdn_chunk_prep_tc_kernel):
// (I + L) X = [Z | Y | I] by forward substitution, one column per thread.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) gdn_chunk_prep_kernel(GdnParams p) {
  extern __shared__ float smem[];
  const PrepTiles<D> t(smem);
  const detail::ChunkCta c(p);
  const PrepInputs<T, D> in(p, detail::token_offset(p, c.b, c.t0, c.h, D));

  stage_prep_inputs<T, D>(in, c.n_valid, t);
  detail::load_gates_and_cumsum(p, c, t.gates);  // synchronises
  kk_qk_stage<T, D>(p, in, c, t);
  __syncthreads();
  scale_rows_stage<D>(t);
  __syncthreads();
  solve_unit_lower_stage<D>(c.n_valid, t);
  __syncthreads();
  store_prep_outputs<D>(p, c.chunk, t);
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
    const int n_valid = detail::valid_rows(p, t0);
    const T* q = static_cast<const T*>(p.q) + detail::token_offset(p, b, t0, h, D);
    const T* k = static_cast<const T*>(p.k) + detail::token_offset(p, b, t0, h, D);
    T* o = static_cast<T*>(p.o) + detail::token_offset(p, b, t0, h, D);
    const float* w = detail::as_f32(p.w) + chunk * kC * D;
    const float* ut = detail::as_f32(p.u_tilde) + chunk * kC * D;
    const float* attn = detail::as_f32(p.attn) + chunk * kC * kC;
    if (tid < kC) detail::store_chunk_decays(p, chunk, tid, s_gamma, s_decay);
    if (p.chunk_states) {
      float* st = detail::as_f32(p.chunk_states) + chunk * D * D;
      for (int idx = tid; idx < D * BV; idx += kThreads) {
        const int d = idx / BV, j = idx % BV;
        st[d * D + v0 + j] = s_state[d * LS + j];
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
      if (p.u) detail::as_f32(p.u)[(chunk * kC + fu.row(r)) * D + v0 + fu.col()] = fu.x[r];
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

/// The CUDA-core prep and scan in fp32 (fp32 inputs, or bf16 with GdnKernel::kFp32).
template <class Dims, typename T>
cudaError_t launch_fwd(const GdnParams& p, cudaStream_t stream, detail::CudaCoreKernels) {
  constexpr int D = detail::square_dim<Dims>();
  const unsigned bh = unsigned(p.batch * p.heads);
  const cudaError_t err =
      detail::launch_with_smem(gdn_chunk_prep_kernel<T, D>, dim3(unsigned(p.n_chunks()), bh),
                               kThreads, prep_smem_bytes<D>(), stream, p);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_fwd_kernel<T, D, kFwdSlice>, dim3(D / kFwdSlice, bh),
                                  kThreads, scan_smem_bytes<D, kFwdSlice>(), stream, p);
}

/// The tensor-core prep and scan (bf16 inputs).
template <class Dims, typename T>
cudaError_t launch_fwd(const GdnParams& p, cudaStream_t stream, detail::TensorCoreKernels) {
  static_assert(std::is_same_v<T, __nv_bfloat16>, "the tensor-core kernels take bf16 inputs");
  const cudaError_t err = detail::launch_gdn_chunk_prep_tc(p, stream);
  if (err != cudaSuccess) return err;
  return detail::launch_gdn_chunk_fwd_scan_tc(p, stream);
}

template <class Dims, typename T>
size_t fwd_smem_bytes(const GdnParams&, detail::CudaCoreKernels) {
  constexpr int D = detail::square_dim<Dims>();
  return std::max(prep_smem_bytes<D>(), scan_smem_bytes<D, kFwdSlice>());
}
template <class Dims, typename T>
size_t fwd_smem_bytes(const GdnParams& p, detail::TensorCoreKernels) {
  return std::max(detail::gdn_chunk_prep_tc_smem_bytes(p),
                  detail::gdn_chunk_scan_tc_smem_bytes(p, /*backward=*/false));
}

}  // namespace

size_t gdn_chunk_fwd_smem_bytes(const GdnParams& p) {
  if (!detail::sizes_supported(p)) return 0;
  size_t bytes = 0;
  detail::dispatch(p, [&](auto dims, auto element, auto family) {
    bytes = fwd_smem_bytes<decltype(dims), decltype(element)>(p, family);
    return cudaSuccess;
  });
  return bytes;
}

cudaError_t gdn_chunk_fwd(const GdnParams& p, cudaStream_t stream) {
  if (!detail::sizes_supported(p) || !detail::forward_pointers_set(p)) {
    return cudaErrorInvalidValue;
  }
  return detail::dispatch(p, [&](auto dims, auto element, auto family) {
    return launch_fwd<decltype(dims), decltype(element)>(p, stream, family);
  });
}

}  // namespace hypnos::kernels
