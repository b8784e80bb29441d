// Device pieces shared by the two prep kernels of the chunked gated delta rule (the CUDA-core one
// in gdn_chunk_fwd.cu, the tensor-core one in gdn_chunk_prep_tc.cu): the per-token gates and
// their within-chunk cumsum, and the identity tile the unit-lower inverse starts from.
#pragma once
#include <cuda_runtime.h>

#include "gdn.h"
#include "gdn_common.cuh"

namespace hypnos::kernels::detail {

/// The per-token gates of a prep CTA, [C] fp32 each in shared memory, one after another from the
/// base pointer: G (g, then its inclusive cumsum within the chunk), beta, and beta exp(G) (the row
/// scale of Z = diag(beta gamma) K).
struct PrepGates {
  float *g, *beta, *zs;
  __device__ explicit PrepGates(float* base) : g(base), beta(g + kC), zs(beta + kC) {}
};

/// g and beta of the chunk's tokens (zero past them) into gates.g, gates.beta; gates.g becomes the
/// inclusive cumsum G (one warp scans 64 values, two per lane), written to g_cum; gates.zs =
/// beta exp(G). Every thread calls it; it synchronises (the caller's shared writes before it are
/// ordered too).
__device__ inline void load_gates_and_cumsum(const GdnParams& p, const detail::ChunkCta& c,
                                             const PrepGates& gates) {
  float *s_g = gates.g, *s_beta = gates.beta, *s_zs = gates.zs;
  const int tid = threadIdx.x;
  if (tid < kC) {
    const bool ok = tid < c.n_valid;
    const int64_t gi = c.gate_row(p, tid);
    s_g[tid] = ok ? p.g[gi] : 0.f;
    s_beta[tid] = ok ? p.beta[gi] : 0.f;
  }
  __syncthreads();
  if (tid < 32) {
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
  if (tid < kC) {
    p.g_cum[c.chunk * kC + tid] = s_g[tid];
    s_zs[tid] = s_beta[tid] * __expf(s_g[tid]);
  }
  __syncthreads();
}

/// a = I, a C x C fp32 tile of row stride LC.
template <int LC>
__device__ __forceinline__ void fill_identity(float* a) {
  for (int idx = threadIdx.x; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    a[i * LC + j] = i == j ? 1.f : 0.f;
  }
}

}  // namespace hypnos::kernels::detail
