// Device helpers shared by the gated-delta-rule kernels: element loads/stores, a block-wide fp32
// "fragment" matmul where each thread owns a fixed set of output elements (register r holds element
// tid + r * NT of the row-major tile), so masks, row scales and row sums are applied in registers,
// and the minimum-blocks value of __launch_bounds__ that a kernel's shared memory implies.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <numeric>

#include "gdn.h"

namespace hypnos::kernels::detail {

inline constexpr int kThreads = 256;
inline constexpr int kC = kGdnChunk;

/// Shared memory of one SM in bytes on the architecture this pass compiles for (228 KB on sm_90
/// and sm_100, 164 KB on sm_80 and sm_87, 100 KB on sm_86, sm_89 and sm_120; the host pass, where
/// __launch_bounds__ means nothing, takes sm_90's), and what the driver reserves of it per CTA.
inline constexpr size_t kSmemPerSm =
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ == 900 || __CUDA_ARCH__ == 1000 || \
    __CUDA_ARCH__ == 1030
    233472;
#elif __CUDA_ARCH__ == 800 || __CUDA_ARCH__ == 870
    167936;
#else
    102400;
#endif
inline constexpr size_t kSmemReservedPerCta = 1024;

/// The minimum-blocks value of __launch_bounds__(threads, .) for a kernel whose CTA asks for
/// `smem` bytes of dynamic shared memory: the CTAs of that size one SM holds (kSmemPerSm, so per
/// architecture), at most 2048 threads' worth, and at most what leaves each thread `min_registers`
/// registers of the SM's 65,536; so that ptxas never takes more registers than let the CTAs that
/// shared memory allows all fit, and where only one fits, a thread may use all the registers its
/// block size allows (with no minimum at all ptxas picks its own target, and at (64, 128),
/// (96, 128) and (128, 64) it chose 128 registers and spilled in the tensor-core chunk backward).
constexpr int min_blocks_for_smem(size_t smem, int threads = kThreads, int min_registers = 0) {
  int blocks = int(kSmemPerSm / (smem + kSmemReservedPerCta));
  if (blocks > 2048 / threads) blocks = 2048 / threads;
  if (min_registers > 0 && blocks > 65536 / (threads * min_registers)) {
    blocks = 65536 / (threads * min_registers);
  }
  return blocks > 1 ? blocks : 1;
}

/// Shared memory of a CUDA-core scan CTA (gdn_chunk_fwd_kernel and gdn_chunk_bwd_scan_kernel), in
/// the order laid out: a BV-column slice of the K x V state S or dS ([K][BV + 1]), the chunk's BV
/// columns of U or dU ([C][BV + 1]; odd strides: column walks hit distinct banks), and the chunk's
/// gamma = exp(G_i) and decay = exp(G_C - G_i) ([C] each). At most 43 KB (K = 256): room for 3
/// (sm_80) to 8 CTAs per SM, more than the registers of 256 threads allow at what the scans need
/// (64 to 128 a thread), so the shared memory implies no minimum blocks here: the scans keep
/// __launch_bounds__(kThreads) and ptxas's own register choice (with a minimum of 2 ptxas gives
/// them 128 registers: 2 CTAs per SM where the 64 it takes on sm_90 allow 4).
template <int K, int BV>
struct CudaCoreScanLayout {
  static constexpr int kLs = BV + 1;
  static constexpr int kStateFloats = K * kLs, kRowFloats = kC * kLs;
  static constexpr size_t kBytes = sizeof(float) * (kStateFloats + kRowFloats + 2 * kC);
};

/// The q and k head value head h reads: h, or h / (H / heads_qk) with grouped value heads. Once
/// per CTA (an integer division), not per chunk.
__device__ __forceinline__ int64_t qk_head(const GdnParams& p, int64_t h) {
  return p.heads_qk == 0 ? h : h / (p.heads / p.heads_qk);
}

/// Sequence b of a batch: where its tokens are in the [*, H, D] tensors, how many it has, and
/// where its chunks are in the chunk-major workspaces. B rows of T tokens each, or (cu_seqlens
/// set) packed sequences one after another (GdnParams::cu_seqlens). Only b is held: each method
/// computes its value from b and p when asked (from the params, or one cached load of the offsets
/// when packed), so that the scans, which keep the state in registers for the whole sequence,
/// carry no more than b beside it.
struct Sequence {
  int b;
  __device__ Sequence(const GdnParams&, int64_t b) : b(int(b)) {}
  /// Its first token's row in [B * T or total, H, D].
  __device__ __forceinline__ int64_t row0(const GdnParams& p) const {
    return p.packed() ? p.cu_seqlens[b] : int64_t(b) * p.seq_len;
  }
  /// Its tokens.
  __device__ __forceinline__ int length(const GdnParams& p) const {
    return p.packed() ? int(p.cu_seqlens[b + 1] - p.cu_seqlens[b]) : int(p.seq_len);
  }
  /// The chunks of the sequences before it, and its own: ceil(length / C).
  __device__ __forceinline__ int64_t chunk0(const GdnParams& p) const {
    return p.packed() ? p.chunk_offsets[b] : int64_t(b) * p.n_chunks();
  }
  __device__ __forceinline__ int n_chunks(const GdnParams& p) const {
    return p.packed() ? int(p.chunk_offsets[b + 1] - p.chunk_offsets[b]) : int(p.n_chunks());
  }
  /// Index of its chunk n of head h in the chunk-major workspaces ([B, H, NC] when uniform).
  __device__ __forceinline__ int64_t chunk(const GdnParams& p, int64_t h, int64_t n) const {
    return chunk0(p) * p.heads + h * n_chunks(p) + n;
  }
  /// Row of its token t, head h, in the [*, H] tensors (g, beta); times D, its offset in the
  /// [*, H, D] ones (v, o and every gradient).
  __device__ __forceinline__ int64_t row(const GdnParams& p, int64_t t, int64_t h) const {
    return (row0(p) + t) * p.heads + h;
  }
  /// The same in q and k ([*, heads_qk, K]) for their head qk_h (qk_head).
  __device__ __forceinline__ int64_t qk_row(const GdnParams& p, int64_t t, int64_t qk_h) const {
    return (row0(p) + t) * p.qk_heads() + qk_h;
  }
  /// The tokens of its chunk starting at token t0: C, or fewer in the last chunk.
  __device__ __forceinline__ int valid_rows(const GdnParams& p, int64_t t0) const {
    const int64_t left = length(p) - t0;
    return int(left < kC ? left : kC);
  }
};

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

/// Output elements of an M x N tile owned by one thread of NT: register r holds element
/// e = tid + r * NT of the row-major tile (row e / N, column e % N). Where N divides NT
/// (kFixedColumn: every head dim but 96) a thread's column is the same in every register, tid % N,
/// and its rows step by NT / N. Otherwise its registers cycle through kColumns = N / gcd(N, NT)
/// columns (3 for N = 96): register r = c + s kColumns is column col(c) of row row(c) + s kRowStep,
/// kRowStep = lcm(N, NT) / N; a product loads its kColumns B values once per k-step. A warp's 32
/// elements lie in one row either way (N and NT multiples of 32), as row_sum needs.
template <int M, int N, int NT = kThreads>
struct Frag {
  static_assert((M * N) % NT == 0, "tile does not divide among the threads");
  static constexpr bool kFixedColumn = NT % N == 0;
  static constexpr int kColumns = N / std::gcd(N, NT);
  static constexpr int kRegs = M * N / NT;
  static constexpr int kRowStep = NT / std::gcd(N, NT);  // NT / N where kFixedColumn
  static_assert(kRegs % kColumns == 0, "each column a thread owns must have the same rows");
  float x[kRegs];
  /// The one column of a thread (kFixedColumn only).
  __device__ __forceinline__ static int col() {
    static_assert(kFixedColumn, "this tile's columns differ between registers: use col(r)");
    return threadIdx.x % N;
  }
  __device__ __forceinline__ static int col(int r) {  // as mma::Bf16Frag
    if constexpr (kFixedColumn) {
      return col();
    } else {
      return (threadIdx.x + (r % kColumns) * NT) % N;
    }
  }
  __device__ __forceinline__ static int row(int r) {
    if constexpr (kFixedColumn) {
      return threadIdx.x / N + r * kRowStep;
    } else {
      return (threadIdx.x + (r % kColumns) * NT) / N + (r / kColumns) * kRowStep;
    }
  }
  __device__ __forceinline__ void fill(float value) {
#pragma unroll
    for (int r = 0; r < kRegs; ++r) x[r] = value;
  }
  /// x[i][j] += sum_{d < depth} a(i, d) * b(d, j).
  template <class FA, class FB>
  __device__ __forceinline__ void mma(int depth, FA a, FB b) {
    if constexpr (kFixedColumn) {
      const int j = col();
#pragma unroll 4
      for (int d = 0; d < depth; ++d) {
        const float bv = b(d, j);
#pragma unroll
        for (int r = 0; r < kRegs; ++r) x[r] = fmaf(a(row(r), d), bv, x[r]);
      }
    } else {
#pragma unroll 4
      for (int d = 0; d < depth; ++d) {
        float bv[kColumns];
#pragma unroll
        for (int c = 0; c < kColumns; ++c) bv[c] = b(d, col(c));
#pragma unroll
        for (int r = 0; r < kRegs; ++r) x[r] = fmaf(a(row(r), d), bv[r % kColumns], x[r]);
      }
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
  static_assert(N % 32 == 0 && NT % 32 == 0, "a warp must lie inside one row");
  constexpr int kWarpsPerRow = N / 32;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < Frag<M, N, NT>::kRegs; ++r) {
    const float s = warp_sum(f.x[r]);
    if (lane == 0) scratch[f.row(r) * kWarpsPerRow + f.col(r) / 32] = s;
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

/// The chunk of one CTA of a chunk-parallel kernel (grid (NC, B*H), NC the longest sequence's
/// chunks): where its first token is, its index in the chunk-major workspaces, and how many tokens
/// it holds. A CTA past its sequence's chunks (packed sequences shorter than the longest) is
/// `beyond` and returns at once.
struct ChunkCta {
  int64_t row;     ///< its first token's row in the [*, H] tensors (times D: in [*, H, D])
  int64_t qk_row;  ///< the same in q and k ([*, heads_qk, K])
  int64_t chunk;   ///< its index in the chunk-major workspaces
  int n_valid;
  bool beyond;
  __device__ explicit ChunkCta(const GdnParams& p)
      : ChunkCta(p, blockIdx.x, blockIdx.y % p.heads, Sequence(p, blockIdx.y / p.heads)) {}
  /// Row of its token i in the [*, H] tensors (g, beta and their gradients).
  __device__ __forceinline__ int64_t gate_row(const GdnParams& p, int i) const {
    return row + int64_t(i) * p.heads;
  }

 private:
  __device__ ChunkCta(const GdnParams& p, int n, int64_t h, const Sequence& seq)
      : row(seq.row(p, int64_t(n) * kC, h)),
        qk_row(seq.qk_row(p, int64_t(n) * kC, qk_head(p, h))),
        chunk(seq.chunk(p, h, n)),
        n_valid(seq.valid_rows(p, int64_t(n) * kC)),
        beyond(n >= seq.n_chunks(p)) {}
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
  __device__ void load_gates(const GdnParams& p, const ChunkCta& c, int i) const {
    g[i] = store_chunk_decays(p, c.chunk, i, gamma, decay);
    beta[i] = i < c.n_valid ? p.beta[c.gate_row(p, i)] : 0.f;
  }
};

/// The end of both chunk-backward kernels: dG (c) + (d) on the last position, gamma_C <S, dS> +
/// sum_i e_i, then dg = the reverse cumsum of dG within the chunk (in sc.rs), and the writes of dg
/// and dbeta for the chunk's tokens. Every thread calls it (state_dot summed over the block
/// already); it synchronises.
__device__ inline void finish_gate_grads(const GdnParams& p, const ChunkCta& c, float state_dot,
                                         const ChunkBwdScalars& sc) {
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
  if (int(threadIdx.x) < c.n_valid) {
    const int64_t gi = c.gate_row(p, threadIdx.x);
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

/// Offset of token t of sequence `seq`, head h, in a [B, T, H, D] (or packed [1, total, H, D])
/// tensor.
__device__ __forceinline__ int64_t token_offset(const GdnParams& p, const Sequence& seq, int64_t t,
                                                int64_t h, int dim) {
  return seq.row(p, t, h) * dim;
}

/// The same in q or k, [B, T, heads_qk, K], for their head qk_h (qk_head).
__device__ __forceinline__ int64_t qk_offset(const GdnParams& p, const Sequence& seq, int64_t t,
                                             int64_t qk_h, int dim) {
  return seq.qk_row(p, t, qk_h) * dim;
}

}  // namespace hypnos::kernels::detail
