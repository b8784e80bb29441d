// Framework-free CUDA kernel of the rotary position embedding on interleaved pairs (the reference's
// `rope`): y[2i] = x[2i] cos - x[2i+1] sin, y[2i+1] = x[2i] sin + x[2i+1] cos, per row t of an
// fp32 cos/sin table [T, D/2]; the backward rotates the gradient back. One kernel each way instead
// of ATen's eight (mul, sub, add, stack, cast) forward and about twelve backward per tensor.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "gdn.h"

namespace hypnos::kernels {

/// x: [B, H, T, D] with element (b, h, t, d) at x[b * stride_b + h * stride_h + t * stride_t + d]
/// (the transposed head view of a projection); y, grad_y, grad_x: [B, H, T, D] contiguous, all in
/// `dtype`. cos, sin: fp32, row t at cos[t * table_stride].
struct RopeParams {
  const void* x = nullptr;
  int64_t stride_b = 0, stride_h = 0, stride_t = 0;
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t table_stride = 0;
  void* y = nullptr;
  const void* grad_y = nullptr;
  void* grad_x = nullptr;
  int64_t batch = 0, heads = 0, seq_len = 0;
  int dim = 0;  ///< D, even
  GdnDtype dtype = GdnDtype::kBFloat16;
};

cudaError_t rope_fwd(const RopeParams& p, cudaStream_t stream);
cudaError_t rope_bwd(const RopeParams& p, cudaStream_t stream);

}  // namespace hypnos::kernels
