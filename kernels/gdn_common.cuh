// Device helpers shared by the gated-delta-rule kernels: element loads/stores, and a block-wide
// fp32 "fragment" matmul where each thread owns a fixed set of output elements (column j = tid % N,
// rows tid / N + r * (NT / N)), so masks, row scales and row sums are applied in registers.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "gdn.h"

namespace hypnos::kernels::detail {

inline constexpr int kThreads = 256;
inline constexpr int kC = kGdnChunk;

/// The tokens of the chunk starting at token t0: C, or fewer in the last chunk.
__device__ __forceinline__ int valid_rows(const GdnParams& p, int64_t t0) {
  return int(p.seq_len - t0 < kC ? p.seq_len - t0 : kC);
}

/// The rows of a chunk that hold tokens, rounded up to a whole MMA k-step (kStep: 8 for the
/// CUDA-core kernels' unrolling, 16 for m16n8k16): how deep a product summed over chunk rows must
/// go. Past the last token the rows of K, Q, V, dO and beta are zero, and so are those of Z, Y, U,
/// W, Ut and dU derived from them (A's rows there are identity rows), so the terms beyond add
/// nothing; a short sequence (a sleep window of 24 tokens) skips most of them.
template <int kStep = 8>
__device__ __forceinline__ int row_depth(int n_valid) {
  return (n_valid + kStep - 1) & ~(kStep - 1);
}

/// A typed workspace of GdnParams (void*) as what it holds: fp32 for the CUDA-core kernels, bf16
/// for the tensor-core ones (GdnParams::bf16_workspaces).
__device__ __forceinline__ float* as_f32(void* p) {
  return static_cast<float*>(p);
}
__device__ __forceinline__ __nv_bfloat16* as_bf16(void* p) {
  return static_cast<__nv_bfloat16*>(p);
}

__device__ __forceinline__ float to_float(float x) {
  return x;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <typename T>
__device__ __forceinline__ float load(const T* p) {
  return to_float(__ldg(p));
}

__device__ __forceinline__ float sigmoid(float x) {
  return 1.f / (1.f + __expf(-x));
}

/// d silu(x) / dx given s = sigmoid(x).
__device__ __forceinline__ float silu_grad(float x, float s) {
  return s * (1.f + x * (1.f - s));
}

/// p[0] = a, p[1] = b by one 8-byte store (p aligned to the pair): accumulator registers r, r + 1
/// of an MMA tile are adjacent columns of one row.
__device__ __forceinline__ void store_pair(float* p, float a, float b) {
  float2 v;
  v.x = a;
  v.y = b;
  *reinterpret_cast<float2*>(p) = v;
}

/// Output elements of an M x N tile owned by one thread of NT.
template <int M, int N, int NT = kThreads>
struct Frag {
  static_assert(NT % N == 0 && (M * N) % NT == 0, "tile does not divide among the threads");
  static constexpr int kRegs = M * N / NT;
  static constexpr int kRowStep = NT / N;
  float x[kRegs];
  __device__ __forceinline__ static int col() { return threadIdx.x % N; }
  __device__ __forceinline__ static int col(int /*r*/) { return col(); }  // as mma::Bf16Frag
  __device__ __forceinline__ static int row(int r) { return threadIdx.x / N + r * kRowStep; }
  __device__ __forceinline__ void fill(float value) {
#pragma unroll
    for (int r = 0; r < kRegs; ++r) x[r] = value;
  }
  /// x[i][j] += sum_{d < depth} a(i, d) * b(d, j).
  template <class FA, class FB>
  __device__ __forceinline__ void mma(int depth, FA a, FB b) {
    const int j = col();
#pragma unroll 4
    for (int d = 0; d < depth; ++d) {
      const float bv = b(d, j);
#pragma unroll
      for (int r = 0; r < kRegs; ++r) x[r] = fmaf(a(row(r), d), bv, x[r]);
    }
  }
  /// mma::Bf16Frag's interface: the CUDA-core fallback computes every row (its rows are spread over
  /// all threads, so there is no slab to skip).
  template <class FA, class FB>
  __device__ __forceinline__ void mma_rows(int /*rows*/, int depth, FA a, FB b) {
    mma(depth, a, b);
  }
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// out[i] (+)= sum_j f.x[i][j] in a fixed order (deterministic). scratch: M * (N / 32) floats.
/// Every thread of the block must call it; it synchronises.
template <int M, int N, int NT>
__device__ void row_sum(const Frag<M, N, NT>& f, float* scratch, float* out, bool accumulate) {
  static_assert(N % 32 == 0, "a warp must lie inside one row");
  constexpr int kWarpsPerRow = N / 32;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < Frag<M, N, NT>::kRegs; ++r) {
    const float s = warp_sum(f.x[r]);
    if (lane == 0) scratch[f.row(r) * kWarpsPerRow + f.col() / 32] = s;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < M; i += NT) {
    float s = 0.f;
    for (int w = 0; w < kWarpsPerRow; ++w) s += scratch[i * kWarpsPerRow + w];
    out[i] = accumulate ? out[i] + s : s;
  }
  __syncthreads();
}

/// Deterministic block sum of one value per thread; the result is returned to every thread.
template <int NT>
__device__ float block_sum(float v, float* scratch /* NT / 32 floats + 1 */) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int w = 0; w < NT / 32; ++w) s += scratch[w];
    scratch[NT / 32] = s;
  }
  __syncthreads();
  const float s = scratch[NT / 32];
  __syncthreads();
  return s;
}

/// The chunk of one CTA of a chunk-parallel kernel (grid (NC, B*H)): its sequence b and head h,
/// its first token t0, its index in the chunk-major workspaces, and how many tokens it holds.
struct ChunkCta {
  int64_t b, h, t0, chunk;
  int n_valid;
  __device__ explicit ChunkCta(const GdnParams& p) : ChunkCta(p, blockIdx.x, blockIdx.y) {}

 private:
  __device__ ChunkCta(const GdnParams& p, int n, int64_t bh)
      : b(bh / p.heads),
        h(bh % p.heads),
        t0(int64_t(n) * kC),
        chunk(bh * p.n_chunks() + n),
        n_valid(valid_rows(p, t0)) {}
};

/// exp(G_i) and exp(G_C - G_i) of token i of chunk `chunk` (G: the within-chunk cumsum of g,
/// g_cum) into gamma[i] and decay[i]; returns G_i. Called by thread i < C.
__device__ __forceinline__ float store_chunk_decays(const GdnParams& p, int64_t chunk, int i,
                                                    float* gamma, float* decay) {
  const float g_last = p.g_cum[chunk * kC + kC - 1], g_i = p.g_cum[chunk * kC + i];
  gamma[i] = __expf(g_i);
  decay[i] = __expf(g_last - g_i);
  return g_i;
}

/// The per-token scalars of a chunk-backward CTA, [C] floats each in shared memory, one after
/// another from the base pointer (kFloats in all): G, gamma = e^G, decay = e^{G_C - G}, beta, and
/// the gate gradient's parts dG (without the state-update terms), e_i = decay_i k_i^T dS u_i,
/// dbeta and a row-sum scratch.
struct ChunkBwdScalars {
  static constexpr int kFloats = 8 * kC;
  float *g, *gamma, *decay, *beta, *dg, *e, *db, *rs;
  __device__ explicit ChunkBwdScalars(float* base)
      : g(base),
        gamma(g + kC),
        decay(gamma + kC),
        beta(decay + kC),
        dg(beta + kC),
        e(dg + kC),
        db(e + kC),
        rs(db + kC) {}
  /// R_ij = exp(G_i - G_j) on and below the diagonal, 0 above: the decay between tokens j <= i.
  __device__ __forceinline__ float decay_ratio(int i, int j) const {
    return i >= j ? __expf(g[i] - g[j]) : 0.f;
  }
  /// G, gamma, decay and beta (zero past the tokens) of token i; called by thread i < C.
  __device__ void load_gates(const GdnParams& p, int64_t b, int64_t h, int64_t t0, int n_valid,
                             int64_t chunk, int i) const {
    g[i] = store_chunk_decays(p, chunk, i, gamma, decay);
    beta[i] = i < n_valid ? p.beta[(b * p.seq_len + t0 + i) * p.heads + h] : 0.f;
  }
};

/// The end of both chunk-backward kernels: dG (c) + (d) on the last position, gamma_C <S, dS> +
/// sum_i e_i, then dg = the reverse cumsum of dG within the chunk (in sc.rs), and the writes of dg
/// and dbeta for the chunk's tokens. Every thread calls it (state_dot summed over the block
/// already); it synchronises.
__device__ inline void finish_gate_grads(const GdnParams& p, int64_t b, int64_t h, int64_t t0,
                                         int n_valid, float state_dot, const ChunkBwdScalars& sc) {
  if (threadIdx.x == 0) {
    float e_sum = 0.f;
    for (int i = 0; i < kC; ++i) e_sum += sc.e[i];
    float acc = 0.f;
    for (int i = kC - 1; i >= 0; --i) {
      float dg_i = sc.dg[i] - sc.e[i];
      if (i == kC - 1) dg_i += sc.gamma[kC - 1] * state_dot + e_sum;
      acc += dg_i;
      sc.rs[i] = acc;
    }
  }
  __syncthreads();
  if (int(threadIdx.x) < n_valid) {
    const int64_t gi = (b * p.seq_len + t0 + threadIdx.x) * p.heads + h;
    p.grad_g[gi] = sc.rs[threadIdx.x];
    p.grad_beta[gi] = sc.db[threadIdx.x];
  }
}

/// Blocks of `per_block` work items for `work` items, for a grid-stride loop (at least 1, at most
/// 2^20: the loop covers the rest).
inline unsigned grid_for(int64_t work, int per_block) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return unsigned(blocks < 1 ? 1 : blocks > (int64_t(1) << 20) ? int64_t(1) << 20 : blocks);
}

/// Calls launch(T{}) with T = __nv_bfloat16 or float for `dtype` and returns its status.
template <class F>
cudaError_t by_dtype(GdnDtype dtype, F launch) {
  return dtype == GdnDtype::kBFloat16 ? launch(__nv_bfloat16{}) : launch(float{});
}

/// Launches kernel_for(T{}) (a __global__ function taking `params` by value) for the element type
/// of `dtype` on `stream` and returns the launch status.
template <class KernelFor, class Params>
cudaError_t launch_typed(GdnDtype dtype, unsigned grid, int block, cudaStream_t stream,
                         const Params& params, KernelFor kernel_for) {
  return by_dtype(dtype, [&](auto tag) {
    kernel_for(tag)<<<grid, block, 0, stream>>>(params);
    return cudaGetLastError();
  });
}

/// Raises the kernel's dynamic shared memory limit to `smem` bytes, launches it on `stream` with
/// `params` and returns the first error.
template <class Kernel>
cudaError_t launch_with_smem(Kernel kernel, dim3 grid, int block, size_t smem, cudaStream_t stream,
                             const GdnParams& params) {
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  kernel<<<grid, block, smem, stream>>>(params);
  return cudaGetLastError();
}

/// Asks for all of L1 as shared memory (a hint to the driver), for kernels that need several CTAs
/// of large shared memory per SM to fill the card.
template <class Kernel>
cudaError_t prefer_max_shared(Kernel kernel) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                              cudaSharedmemCarveoutMaxShared);
}

/// Offset of token t of (batch b, head h) in a [B, T, H, D] tensor.
__device__ __forceinline__ int64_t token_offset(const GdnParams& p, int64_t b, int64_t t, int64_t h,
                                                int dim) {
  return ((b * p.seq_len + t) * p.heads + h) * dim;
}

}  // namespace hypnos::kernels::detail
