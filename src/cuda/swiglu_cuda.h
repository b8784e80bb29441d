// Internal: SwiGLU's gate SiLU(g) * u through the fused CUDA kernel (kernels/swiglu.h).
#pragma once
#include <ATen/ATen.h>

#include <optional>

namespace hypnos::nn::detail {

/// h: [..., 2F] = [g | u] -> SiLU(g) * u: [..., F] in h's dtype; nullopt when the kernel does not
/// take h (dtype other than bf16 / fp32, not contiguous, not on a GPU).
std::optional<at::Tensor> silu_mul_cuda(const at::Tensor& h);

}  // namespace hypnos::nn::detail
