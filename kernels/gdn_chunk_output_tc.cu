// The forward's output as a chunk-parallel kernel on bf16 tensor cores: the second half of the
// separate-output forward (GdnParams::forward_output), after a scan that carries only the state and
// writes U and the state entering each chunk. O = scale diag(gamma) Q S + P U for every chunk at
// once, 64 columns of V per CTA: the products the fused scan does inside its sequential step, here
// off the sequential path. Each product runs the same MMAs on the same bf16 operands as the fused
// scan, so o is the same bits either way.
#include <cuda_bf16.h>

#include <cstdint>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_dispatch.cuh"
#include "gdn_mma.cuh"
#include "gdn_stage.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using bf16 = __nv_bfloat16;
using detail::kC;
using detail::kThreads;
using mma::rows_of;
using Acc = mma::M16N8K8;  // accumulator layout (the same for m16n8k16)

/// Columns of V per CTA.
constexpr int kOutSlice = 64;

/// Shared memory: gamma ([C] fp32), then bf16 tiles with rows padded by 8 (conflict-free
/// ldmatrix): Q ([C][K]), P ([C][C]), the slice of the state entering the chunk ([K][64]) and of U
/// ([C][64]). 89 KB at K = 256.
template <int K>
struct OutputLayout {
  static constexpr int kLdK = K + 8, kLdC = kC + 8, kLdS = kOutSlice + 8;
  static constexpr size_t kHalves =
      size_t(kC) * kLdK + size_t(kC) * kLdC + size_t(K) * kLdS + size_t(kC) * kLdS;
  static constexpr size_t kBytes = sizeof(float) * kC + sizeof(bf16) * kHalves;
};

// grid (NC, B*H, V / 64), 256 threads: 8 warps of 16 rows x 32 columns (BlockTiling). Rows past
// the tokens are zero in Q, P and U and are not stored; warps whose rows all lie past them stop
// after the barrier.
template <int K, int V>
__global__ void __launch_bounds__(kThreads) gdn_chunk_output_tc_kernel(GdnParams p) {
  using L = OutputLayout<K>;
  using Tiling = mma::BlockTiling<kC, kOutSlice, kThreads>;
  extern __shared__ float smem[];
  float* s_gamma = smem;
  bf16* s_q = reinterpret_cast<bf16*>(smem + kC);
  bf16* s_p = s_q + kC * L::kLdK;
  bf16* s_s = s_p + kC * L::kLdC;
  bf16* s_u = s_s + K * L::kLdS;

  const detail::ChunkCta c(p);
  if (c.beyond) return;
  const int n_valid = c.n_valid, v0 = blockIdx.z * kOutSlice;
  detail::stage_bf16_async<kC, K, kThreads>(
      s_q, L::kLdK, static_cast<const bf16*>(p.q) + c.qk_row * K, p.qk_heads() * K, n_valid);
  detail::stage_bf16_async<kC, kC, kThreads>(
      s_p, L::kLdC, detail::as_bf16(p.attn) + c.chunk * kC * kC, kC, n_valid);
  detail::stage_bf16_async<K, kOutSlice, kThreads>(
      s_s, L::kLdS, detail::as_bf16(p.chunk_states) + c.chunk * K * V + v0, V, K);
  detail::stage_bf16_async<kC, kOutSlice, kThreads>(
      s_u, L::kLdS, detail::as_bf16(p.u) + c.chunk * kC * V + v0, V, n_valid);
  detail::cp_async_commit();
  if (threadIdx.x < kC) s_gamma[threadIdx.x] = __expf(p.g_cum[c.chunk * kC + threadIdx.x]);
  detail::cp_async_wait<0>();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = Tiling::row0(warp), c0 = Tiling::col0(warp);
  if (r0 >= n_valid) return;  // no token rows (and no barrier after this)
  float acc[Tiling::kNTiles][4] = {};
  // Q S, scaled by scale * gamma_i per row; then + P U (P is lower triangular: rows r0.. need
  // columns below r0 + 16 only, as in the scan).
  mma::warp_mma_bf16<Tiling::kNTiles>(acc, lane, r0, c0, 0, K, rows_of(s_q, L::kLdK),
                                      rows_of(s_s, L::kLdS));
#pragma unroll
  for (int nt = 0; nt < Tiling::kNTiles; ++nt) {
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[nt][r] *= p.scale * s_gamma[r0 + Acc::c_row(lane, r)];
  }
  const int depth = detail::row_depth<16>(n_valid);
  mma::warp_mma_bf16<Tiling::kNTiles>(acc, lane, r0, c0, 0, min(r0 + 16, depth),
                                      rows_of(s_p, L::kLdC), rows_of(s_u, L::kLdS));
  bf16* o = static_cast<bf16*>(p.o) + c.row * V + v0;
  const int64_t row_stride = p.heads * V;
#pragma unroll
  for (int nt = 0; nt < Tiling::kNTiles; ++nt) {
#pragma unroll
    for (int r = 0; r < 4; r += 2) {
      const int i = r0 + Acc::c_row(lane, r), j = c0 + nt * 8 + Acc::c_col(lane, r);
      if (i < n_valid) detail::store_bf16_pair(o + i * row_stride + j, acc[nt][r], acc[nt][r + 1]);
    }
  }
}

}  // namespace

namespace detail {

cudaError_t launch_gdn_chunk_output_tc(const GdnParams& p, cudaStream_t stream) {
  return with_head_dims(
      p,
      [&](auto dims) {
        constexpr int K = decltype(dims)::kK, V = decltype(dims)::kV;
        static_assert(V % kOutSlice == 0, "the output kernel's CTAs take 64 columns of V");
        return launch_with_smem(
            gdn_chunk_output_tc_kernel<K, V>,
            dim3(unsigned(p.n_chunks()), unsigned(p.batch * p.heads), unsigned(V / kOutSlice)),
            kThreads, OutputLayout<K>::kBytes, stream, p);
      },
      TensorCoreHeadDims{});
}

size_t gdn_chunk_output_tc_smem_bytes(const GdnParams& p) {
  return head_dims_bytes(
      p, [](auto dims) { return OutputLayout<decltype(dims)::kK>::kBytes; }, TensorCoreHeadDims{});
}

}  // namespace detail
}  // namespace hypnos::kernels
