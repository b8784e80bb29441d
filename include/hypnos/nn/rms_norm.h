// RMSNorm over the last dimension with a learned gain (no bias, no mean subtraction).
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace hypnos::nn {

struct RMSNormOptions {
  explicit RMSNormOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);
  /// Added to the mean square. Default: 1e-6.
  TORCH_ARG(double, eps) = 1e-6;
};

/// y = x * rsqrt(mean(x^2) + eps) * weight. Parameter: weight [D] (ones at init).
class RMSNormImpl : public torch::nn::Cloneable<RMSNormImpl> {
 public:
  explicit RMSNormImpl(RMSNormOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);

  RMSNormOptions options;
  at::Tensor weight;
};
TORCH_MODULE(RMSNorm);

}  // namespace hypnos::nn
