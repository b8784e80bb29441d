// Framework-free CUDA kernel of SwiGLU's gate: y = SiLU(g) * u with [g | u] the two halves of one
// projection's output rows; the backward writes both halves' gradients. One kernel each way
// instead of ATen's silu and mul forward and three kernels backward.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "gdn.h"

namespace hypnos::kernels {

/// h, grad_h: [rows, 2F] contiguous (g then u); y, grad_y: [rows, F] contiguous; all in `dtype`.
struct SiluMulParams {
  const void* h = nullptr;
  void* y = nullptr;
  const void* grad_y = nullptr;
  void* grad_h = nullptr;
  int64_t rows = 0, features = 0;
  GdnDtype dtype = GdnDtype::kBFloat16;
};

cudaError_t silu_mul_fwd(const SiluMulParams& p, cudaStream_t stream);
cudaError_t silu_mul_bwd(const SiluMulParams& p, cudaStream_t stream);

}  // namespace hypnos::kernels
