// Internal: RoPE through the fused CUDA kernel (kernels/rope.h) as an autograd function.
#pragma once
#include <ATen/ATen.h>

#include <optional>

#include "hypnos/nn/rope.h"

namespace hypnos::nn::detail {

/// apply_rope on the GPU in one kernel each way; nullopt when the kernel does not take the inputs
/// (dtype other than bf16 / fp32, a table that is not fp32 or needs a gradient, strided channels).
std::optional<at::Tensor> apply_rope_cuda(const at::Tensor& x, const RopeTable& table);

}  // namespace hypnos::nn::detail
