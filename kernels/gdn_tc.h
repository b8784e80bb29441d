// The bf16 tensor-core kernels of the gated delta rule (mma.sync m16n8k16 with ldmatrix operands
// from bf16 shared-memory tiles), launched by gdn_chunk_fwd and gdn_chunk_bwd for bf16 inputs.
// Head dims: the (K, V) pairs of gdn_dispatch.cuh's TensorCoreHeadDims (checked by the callers).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "gdn.h"

namespace hypnos::kernels::detail {

/// Shared memory per SM of an H100 (sm_90: 228 KB, of which at most 227 KB for one block), and
/// what the driver reserves per CTA on top of its dynamic shared memory.
inline constexpr size_t kSm90SharedPerSm = 233472, kSharedReservedPerCta = 1024;

/// The __launch_bounds__ minimum of CTAs per SM of a tensor-core kernel of `threads` threads and
/// `smem_bytes` of dynamic shared memory: as many as one H100 SM holds (its shared memory, at most
/// 2048 threads), or fewer where each thread must keep `min_registers` registers (of 65,536 per
/// SM) not to spill, so that the compiler's register use never lowers occupancy below what the
/// shared memory allows. 1 where only one CTA fits, which leaves a thread all the registers the
/// block size allows: with no minimum at all ptxas picks its own target, and at (64, 128),
/// (96, 128) and (128, 64) it chose 128 registers and spilled in the chunk backward.
constexpr int tc_min_blocks(size_t smem_bytes, int threads, int min_registers = 0) {
  int blocks = int(kSm90SharedPerSm / (smem_bytes + kSharedReservedPerCta));
  if (blocks > 2048 / threads) blocks = 2048 / threads;
  if (min_registers > 0 && blocks > 65536 / (threads * min_registers)) {
    blocks = 65536 / (threads * min_registers);
  }
  return blocks > 1 ? blocks : 1;
}

/// The prep kernel (gdn_chunk_prep_tc.cu): g_cum, W, Ut, P and, for a backward, A, per chunk.
cudaError_t launch_gdn_chunk_prep_tc(const GdnParams& params, cudaStream_t stream);

/// The forward scan (gdn_chunk_scan_tc.cu): o, the final state and, for a backward, U and the
/// state entering each chunk, from the prep kernel's W, Ut, P and g_cum.
cudaError_t launch_gdn_chunk_fwd_scan_tc(const GdnParams& params, cudaStream_t stream);

/// The backward's reverse scan (gdn_chunk_scan_tc.cu): dU, dS leaving each chunk, d(initial
/// state).
cudaError_t launch_gdn_chunk_bwd_scan_tc(const GdnParams& params, cudaStream_t stream);

/// The dynamic shared memory one CTA of each tensor-core kernel asks for at p's sizes (head dims
/// and scan slice), 0 for head dims they are not built for.
size_t gdn_chunk_prep_tc_smem_bytes(const GdnParams& params);
size_t gdn_chunk_scan_tc_smem_bytes(const GdnParams& params, bool backward);
size_t gdn_chunk_bwd_tc_smem_bytes(const GdnParams& params);

/// Every chunk-local gradient (dq, dk, dv, dg, dbeta) from the reverse scan's dU and dS per chunk
/// (gdn_chunk_bwd_tc.cu).
cudaError_t launch_gdn_chunk_bwd_tc(const GdnParams& params, cudaStream_t stream);

}  // namespace hypnos::kernels::detail
