// The tensor-core chunk backward of the gated delta rule (gdn_chunk_bwd_tc.cu), launched by
// gdn_chunk_bwd for bf16 inputs.
#pragma once
#include <cuda_runtime.h>

#include "gdn.h"

namespace hypnos::kernels::detail {

/// Every chunk-local gradient (dq, dk, dv, dg, dbeta) from the reverse scan's dU and dS per chunk;
/// bf16 inputs, head dim 64 or 128 (checked by the caller).
cudaError_t launch_gdn_chunk_bwd_tc(const GdnParams& params, cudaStream_t stream);

}  // namespace hypnos::kernels::detail
