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

/// The CUDA-core prep kernel's shared memory, in the order PrepTiles lays it out: K, then Z, then
/// W ([C][K + 1]); V, then Y, then Ut ([C][V + 1]); A and L ([C][C + 1] each; odd row strides:
/// column walks hit distinct banks); the gates (3 [C]). 165,632 bytes at K = V = 256: under
/// sm_80's 166,912 per block too.
template <int K, int V>
struct PrepLayout {
  static constexpr int kLk = K + 1, kLv = V + 1, kLc = kC + 1;
  static constexpr int kKFloats = kC * kLk, kVFloats = kC * kLv, kCFloats = kC * kLc;
  static constexpr size_t kBytes = sizeof(float) * (kKFloats + kVFloats + 2 * kCFloats + 3 * kC);
  // At least 128 registers a thread (at most 2 CTAs): at 3 CTAs' 85 the solve columns spill
  // (K = V = 64 on sm_90: 100 bytes of spill stores).
  static constexpr int kMinBlocks = detail::min_blocks_for_smem(kBytes, kThreads, 128);
  /// The wider of the two row tiles: the loops over both walk its columns.
  static constexpr int kMaxDim = K > V ? K : V;
};

/// The chunk's rows of q, k ([B, T, H, K]) and v ([B, T, H, V]) as a prep kernel reads them.
template <typename T, int K, int V>
struct PrepInputs {
  int64_t qk_stride, v_stride;
  const T *q, *k, *v;
  __device__ PrepInputs(const GdnParams& p, int64_t qk_tok, int64_t v_tok)
      : qk_stride(p.qk_heads() * K),
        v_stride(p.heads * V),
        q(static_cast<const T*>(p.q) + qk_tok),
        k(static_cast<const T*>(p.k) + qk_tok),
        v(static_cast<const T*>(p.v) + v_tok) {}
};

// ---- The CUDA-core prep kernel (fp32)

/// The CUDA-core prep kernel's shared memory by what it holds, one name per meaning; names of one
/// space are grouped, in the order PrepLayout<K, V> lays the spaces out.
template <int K, int V>
struct PrepTiles {
  using Layout = PrepLayout<K, V>;
  static constexpr int kLk = Layout::kLk, kLv = Layout::kLv, kLc = Layout::kLc;
  // ---- [C][LK]: K, then Z = diag(beta gamma) K in place, then W = A Z (solved in place)
  float *k, *z, *w;
  // ---- [C][LV]: V, then Y = diag(beta) V in place, then Ut = A Y (solved in place)
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
        v(k + Layout::kKFloats),
        y(v),
        ut(v),
        a(v + Layout::kVFloats),
        l(a + Layout::kCFloats),
        gates(l + Layout::kCFloats) {}
};

/// K and V (rows past the tokens zero) into their tiles, and A = I. One loop walks the wider head
/// dim for both (`K == kMaxDim ||` makes the narrower's guard vanish where K = V).
template <typename T, int K, int V>
__device__ __forceinline__ void stage_prep_inputs(const PrepInputs<T, K, V>& in, int n_valid,
                                                  const PrepTiles<K, V>& t) {
  constexpr int LK = PrepTiles<K, V>::kLk, LV = PrepTiles<K, V>::kLv;
  constexpr int N = PrepLayout<K, V>::kMaxDim;
  for (int idx = threadIdx.x; idx < kC * N; idx += kThreads) {
    const int i = idx / N, d = idx % N;
    const bool ok = i < n_valid;
    if (K == N || d < K) t.k[i * LK + d] = ok ? load(in.k + i * in.qk_stride + d) : 0.f;
    if (V == N || d < V) t.v[i * LV + d] = ok ? load(in.v + i * in.v_stride + d) : 0.f;
  }
  detail::fill_identity<PrepTiles<K, V>::kLc>(t.a);
}

/// L = strict_lower(diag(beta) K K^T * R) into its tile and P = scale (Q K^T * R) (R_ij =
/// exp(G_i - G_j) on and below the diagonal, 0 above) to attn, both from one pass over K.
template <typename T, int K, int V>
__device__ __forceinline__ void kk_qk_stage(const GdnParams& p, const PrepInputs<T, K, V>& in,
                                            const detail::ChunkCta& c, const PrepTiles<K, V>& t) {
  constexpr int LK = PrepTiles<K, V>::kLk, LC = PrepTiles<K, V>::kLc;
  const int n_valid = c.n_valid;
  Frag<kC, kC> kk, qk;
  kk.fill(0.f);
  qk.fill(0.f);
  auto kt = [&](int d, int j) { return t.k[j * LK + d]; };
  kk.mma(
      K, [&](int i, int d) { return t.k[i * LK + d]; }, kt);
  qk.mma(
      K, [&](int i, int d) { return i < n_valid ? load(in.q + i * in.qk_stride + d) : 0.f; }, kt);
#pragma unroll
  for (int r = 0; r < kk.kRegs; ++r) {
    const int i = kk.row(r), j = kk.col();
    const float decay = i >= j ? __expf(t.gates.g[i] - t.gates.g[j]) : 0.f;
    t.l[i * LC + j] = i > j ? t.gates.beta[i] * kk.x[r] * decay : 0.f;
    detail::as_f32(p.attn)[(c.chunk * kC + i) * kC + j] = p.scale * qk.x[r] * decay;
  }
}

/// Z = diag(beta gamma) K and Y = diag(beta) V, in place of K and V.
template <int K, int V>
__device__ __forceinline__ void scale_rows_stage(const PrepTiles<K, V>& t) {
  constexpr int LK = PrepTiles<K, V>::kLk, LV = PrepTiles<K, V>::kLv;
  constexpr int N = PrepLayout<K, V>::kMaxDim;
  for (int idx = threadIdx.x; idx < kC * N; idx += kThreads) {
    const int i = idx / N, d = idx % N;
    if (K == N || d < K) t.z[i * LK + d] *= t.gates.zs[i];
    if (V == N || d < V) t.y[i * LV + d] *= t.gates.beta[i];
  }
}

/// (I + L) X = [Z | Y | I] by forward substitution, one column per thread: X = [W | Ut | A] in
/// place. Past the tokens L's rows are zero: those rows of X are the right-hand side's, and an
/// identity column e_c with c past the tokens solves itself.
template <int K, int V>
__device__ __forceinline__ void solve_unit_lower_stage(int n_valid, const PrepTiles<K, V>& t) {
  constexpr int LK = PrepTiles<K, V>::kLk, LV = PrepTiles<K, V>::kLv;
  constexpr int LC = PrepTiles<K, V>::kLc;
  for (int c = threadIdx.x; c < K + V + kC; c += kThreads) {
    if (c >= K + V + n_valid) continue;
    float* col = c < K ? t.z + c : c < K + V ? t.y + (c - K) : t.a + (c - K - V);
    const int ld = c < K + V ? (c < K ? LK : LV) : LC;
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
template <int K, int V>
__device__ __forceinline__ void store_prep_outputs(const GdnParams& p, int64_t chunk,
                                                   const PrepTiles<K, V>& t) {
  constexpr int LK = PrepTiles<K, V>::kLk, LV = PrepTiles<K, V>::kLv;
  constexpr int LC = PrepTiles<K, V>::kLc, N = PrepLayout<K, V>::kMaxDim;
  const int tid = threadIdx.x;
  for (int idx = tid; idx < kC * N; idx += kThreads) {
    const int i = idx / N, d = idx % N;
    if (K == N || d < K) detail::as_f32(p.w)[(chunk * kC + i) * K + d] = t.w[i * LK + d];
    if (V == N || d < V) detail::as_f32(p.u_tilde)[(chunk * kC + i) * V + d] = t.ut[i * LV + d];
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
template <typename T, int K, int V>
__global__ void __launch_bounds__(kThreads, PrepLayout<K, V>::kMinBlocks)
    gdn_chunk_prep_kernel(GdnParams p) {
  extern __shared__ float smem[];
  const PrepTiles<K, V> t(smem);
  const detail::ChunkCta c(p);
  if (c.beyond) return;
  const PrepInputs<T, K, V> in(p, c.qk_row * K, c.row * V);

  stage_prep_inputs<T, K, V>(in, c.n_valid, t);
  detail::load_gates_and_cumsum(p, c, t.gates);  // synchronises
  kk_qk_stage<T, K, V>(p, in, c, t);
  __syncthreads();
  scale_rows_stage<K, V>(t);
  __syncthreads();
  solve_unit_lower_stage<K, V>(c.n_valid, t);
  __syncthreads();
  store_prep_outputs<K, V>(p, c.chunk, t);
}

// grid (V / BV, B*H). The state slice S[:, v0:v0+BV] (all K rows) lives in shared memory across
// all chunks.
template <typename T, int K, int V, int BV>
__global__ void __launch_bounds__(kThreads) gdn_chunk_fwd_kernel(GdnParams p) {
  using Layout = detail::CudaCoreScanLayout<K, BV>;
  constexpr int LS = Layout::kLs;
  extern __shared__ float smem[];
  float* s_state = smem;                        // [K][LS]  S (k rows, v columns of this slice)
  float* s_u = s_state + Layout::kStateFloats;  // [C][LS]  U
  float* s_gamma = s_u + Layout::kRowFloats;    // [C]      exp(G_i)
  float* s_decay = s_gamma + kC;                // [C]      exp(G_C - G_i)

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, h = bh % p.heads, qk_h = detail::qk_head(p, h);
  const detail::Sequence seq(p, bh / p.heads);
  const int64_t qk_stride = p.qk_heads() * K, v_stride = p.heads * V;
  const int tid = threadIdx.x;

  for (int idx = tid; idx < K * BV; idx += kThreads) {
    const int d = idx / BV, j = idx % BV;
    s_state[d * LS + j] = p.initial_state ? p.initial_state[(bh * K + d) * V + v0 + j] : 0.f;
  }
  __syncthreads();  // the chunk loop reads the whole slice, written by other threads
  for (int64_t n = 0; n < seq.n_chunks(p); ++n) {
    const int64_t t0 = n * kC, chunk = seq.chunk(p, h, n);
    const int n_valid = seq.valid_rows(p, t0);
    const T* q = static_cast<const T*>(p.q) + detail::qk_offset(p, seq, t0, qk_h, K);
    const T* k = static_cast<const T*>(p.k) + detail::qk_offset(p, seq, t0, qk_h, K);
    T* o = static_cast<T*>(p.o) + detail::token_offset(p, seq, t0, h, V);
    const float* w = detail::as_f32(p.w) + chunk * kC * K;
    const float* ut = detail::as_f32(p.u_tilde) + chunk * kC * V;
    const float* attn = detail::as_f32(p.attn) + chunk * kC * kC;
    if (tid < kC) detail::store_chunk_decays(p, chunk, tid, s_gamma, s_decay);
    if (p.chunk_states) {
      float* st = detail::as_f32(p.chunk_states) + chunk * K * V;
      for (int idx = tid; idx < K * BV; idx += kThreads) {
        const int d = idx / BV, j = idx % BV;
        st[d * V + v0 + j] = s_state[d * LS + j];
      }
    }
    __syncthreads();
    auto state = [&](int d, int j) { return s_state[d * LS + j]; };
    Frag<kC, BV> fu;  // U = Ut - W S
#pragma unroll
    for (int r = 0; r < fu.kRegs; ++r) fu.x[r] = ut[fu.row(r) * V + v0 + fu.col()];
    fu.mma(
        K, [&](int i, int d) { return -w[i * K + d]; }, state);
#pragma unroll
    for (int r = 0; r < fu.kRegs; ++r) {
      s_u[fu.row(r) * LS + fu.col()] = fu.x[r];
      if (p.u) detail::as_f32(p.u)[(chunk * kC + fu.row(r)) * V + v0 + fu.col()] = fu.x[r];
    }
    __syncthreads();
    Frag<kC, BV> fo;  // O = scale diag(gamma) Q S + P U
    fo.fill(0.f);
    fo.mma(
        K, [&](int i, int d) { return i < n_valid ? load(q + i * qk_stride + d) : 0.f; }, state);
#pragma unroll
    for (int r = 0; r < fo.kRegs; ++r) fo.x[r] *= p.scale * s_gamma[fo.row(r)];
    fo.mma(
        kC, [&](int i, int m) { return attn[i * kC + m]; },
        [&](int m, int j) { return s_u[m * LS + j]; });
#pragma unroll
    for (int r = 0; r < fo.kRegs; ++r) {
      if (fo.row(r) < n_valid) {
        o[fo.row(r) * v_stride + v0 + fo.col()] = detail::from_float<T>(fo.x[r]);
      }
    }
    Frag<K, BV> fs;  // S <- gamma_C S + K^T diag(decay) U
    const float gamma_last = s_gamma[kC - 1];
#pragma unroll
    for (int r = 0; r < fs.kRegs; ++r) fs.x[r] = gamma_last * s_state[fs.row(r) * LS + fs.col()];
    fs.mma(
        kC,
        [&](int d, int i) { return i < n_valid ? s_decay[i] * load(k + i * qk_stride + d) : 0.f; },
        [&](int i, int j) { return s_u[i * LS + j]; });
    __syncthreads();
#pragma unroll
    for (int r = 0; r < fs.kRegs; ++r) s_state[fs.row(r) * LS + fs.col()] = fs.x[r];
    __syncthreads();
  }
  if (p.final_state) {
    for (int idx = tid; idx < K * BV; idx += kThreads) {
      const int d = idx / BV, j = idx % BV;
      p.final_state[(bh * K + d) * V + v0 + j] = s_state[d * LS + j];
    }
  }
}

constexpr int kFwdSlice = 32;

/// The CUDA-core prep and scan in fp32 (fp32 inputs, or bf16 with GdnKernel::kFp32).
template <int K, int V, typename T>
cudaError_t launch_fwd(const GdnParams& p, cudaStream_t stream, detail::CudaCoreKernels) {
  const unsigned bh = unsigned(p.batch * p.heads);
  const cudaError_t err =
      detail::launch_with_smem(gdn_chunk_prep_kernel<T, K, V>, dim3(unsigned(p.n_chunks()), bh),
                               kThreads, PrepLayout<K, V>::kBytes, stream, p);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_fwd_kernel<T, K, V, kFwdSlice>, dim3(V / kFwdSlice, bh),
                                  kThreads, detail::CudaCoreScanLayout<K, kFwdSlice>::kBytes,
                                  stream, p);
}

/// The tensor-core prep and scan (bf16 inputs).
template <int K, int V, typename T>
cudaError_t launch_fwd(const GdnParams& p, cudaStream_t stream, detail::TensorCoreKernels) {
  static_assert(std::is_same_v<T, __nv_bfloat16>, "the tensor-core kernels take bf16 inputs");
  cudaError_t err = detail::launch_gdn_chunk_prep_tc(p, stream);
  if (err == cudaSuccess) err = detail::launch_gdn_chunk_fwd_scan_tc(p, stream);
  if (err == cudaSuccess && p.separate_output())
    err = detail::launch_gdn_chunk_output_tc(p, stream);
  return err;
}

template <int K, int V, typename T>
size_t fwd_smem_bytes(const GdnParams&, detail::CudaCoreKernels) {
  return std::max(PrepLayout<K, V>::kBytes, detail::CudaCoreScanLayout<K, kFwdSlice>::kBytes);
}
template <int K, int V, typename T>
size_t fwd_smem_bytes(const GdnParams& p, detail::TensorCoreKernels) {
  return std::max({detail::gdn_chunk_prep_tc_smem_bytes(p),
                   detail::gdn_chunk_scan_tc_smem_bytes(p, /*backward=*/false),
                   p.separate_output() ? detail::gdn_chunk_output_tc_smem_bytes(p) : size_t{0}});
}

}  // namespace

size_t gdn_chunk_fwd_smem_bytes(const GdnParams& p) {
  return detail::dispatch_bytes(p, [&](auto dims, auto element, auto family) {
    using Dims = decltype(dims);
    return fwd_smem_bytes<Dims::kK, Dims::kV, decltype(element)>(p, family);
  });
}

cudaError_t gdn_chunk_fwd(const GdnParams& p, cudaStream_t stream) {
  if (!detail::sizes_supported(p) || !detail::forward_pointers_set(p)) {
    return cudaErrorInvalidValue;
  }
  return detail::dispatch(p, [&](auto dims, auto element, auto family) {
    using Dims = decltype(dims);
    return launch_fwd<Dims::kK, Dims::kV, decltype(element)>(p, stream, family);
  });
}

}  // namespace hypnos::kernels
