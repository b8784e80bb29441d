// The bf16 tensor-core kernels of the gated delta rule (mma.sync m16n8k16 with ldmatrix operands
// from bf16 shared-memory tiles), launched by gdn_chunk_fwd and gdn_chunk_bwd for bf16 inputs.
// Head dims: the (K, V) pairs of gdn_dispatch.cuh's TensorCoreHeadDims (checked by the callers).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "gdn.h"

namespace hypnos::kernels::detail {

/// The prep kernel (gdn_chunk_prep_tc.cu): g_cum, W, Ut, P and, for a backward, A, per chunk.
cudaError_t launch_gdn_chunk_prep_tc(const GdnParams& params, cudaStream_t stream);

/// The forward scan (gdn_chunk_scan_tc.cu): o (unless params.separate_output()), the final state
/// and, where u and chunk_states are set, U and the state entering each chunk, from the prep
/// kernel's W, Ut, P and g_cum.
cudaError_t launch_gdn_chunk_fwd_scan_tc(const GdnParams& params, cudaStream_t stream);

/// The separate output kernel (gdn_chunk_output_tc.cu): o from Q, P, g_cum and the scan's U and
/// chunk states, every chunk at once.
cudaError_t launch_gdn_chunk_output_tc(const GdnParams& params, cudaStream_t stream);

/// The backward's reverse scan (gdn_chunk_scan_tc.cu): dU, dS leaving each chunk, d(initial
/// state).
cudaError_t launch_gdn_chunk_bwd_scan_tc(const GdnParams& params, cudaStream_t stream);

/// The dynamic shared memory one CTA of each tensor-core kernel asks for at p's sizes (head dims
/// and scan slice), 0 for head dims they are not built for.
size_t gdn_chunk_prep_tc_smem_bytes(const GdnParams& params);
size_t gdn_chunk_scan_tc_smem_bytes(const GdnParams& params, bool backward);
size_t gdn_chunk_bwd_tc_smem_bytes(const GdnParams& params);
size_t gdn_chunk_output_tc_smem_bytes(const GdnParams& params);

/// Every chunk-local gradient (dq, dk, dv, dg, dbeta) from the reverse scan's dU and dS per chunk
/// (gdn_chunk_bwd_tc.cu).
cudaError_t launch_gdn_chunk_bwd_tc(const GdnParams& params, cudaStream_t stream);

}  // namespace hypnos::kernels::detail
