// Internal: the CUDA side of ops/gdn_fused.h. Each returns nullopt when the kernels do not take the
// inputs (dtype, shape, layout), and the dispatcher then runs the ATen composition.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <utility>

namespace hypnos::ops::fused::cuda {

std::optional<std::pair<at::Tensor, at::Tensor>> causal_conv_silu(const at::Tensor& x,
                                                                  const at::Tensor& weight,
                                                                  const at::Tensor& cache);
std::optional<std::pair<at::Tensor, at::Tensor>> dynamic_conv_silu(const at::Tensor& x,
                                                                   const at::Tensor& kernel,
                                                                   const at::Tensor& cache);
std::optional<at::Tensor> l2_normalize_heads(const at::Tensor& x, int64_t heads, bool silu);
std::optional<std::pair<at::Tensor, at::Tensor>> gdn_gates(const at::Tensor& a, const at::Tensor& b,
                                                           const at::Tensor& A_log,
                                                           const at::Tensor& dt_bias);
std::optional<at::Tensor> gated_rms_norm(const at::Tensor& x, const at::Tensor& gate,
                                         const at::Tensor& weight, double eps);

}  // namespace hypnos::ops::fused::cuda
