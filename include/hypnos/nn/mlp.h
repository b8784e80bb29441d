// The two block MLPs: GELU (the reference's) and SwiGLU. Neither has biases.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "hypnos/ops/ops_options.h"

namespace hypnos::nn {

struct MlpOptions {
  explicit MlpOptions(int64_t d_model) : d_model_(d_model) {}
  TORCH_ARG(int64_t, d_model);
  /// Expansion ratio r. Default: 4.
  TORCH_ARG(int64_t, ratio) = 4;
  /// SwiGLU hidden width F, as a checkpoint states it (intermediate_size). Default: 0 = derived
  /// from the ratio.
  TORCH_ARG(int64_t, hidden) = 0;
  /// The ops' implementation choices (here: whether SwiGLU's gate runs its fused CUDA kernel).
  /// Default: OpsOptions{}.
  TORCH_ARG(ops::OpsOptions, ops);
};

/// down_proj(gelu(up_proj(x))), exact (erf) GELU, hidden r*D. Parameters: up_proj [rD, D],
/// down_proj [D, rD].
class GeluMlpImpl : public torch::nn::Cloneable<GeluMlpImpl> {
 public:
  explicit GeluMlpImpl(MlpOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);

  MlpOptions options;
  torch::nn::Linear up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(GeluMlp);

/// down_proj(silu(gate_proj(x)) * up_proj(x)), hidden F = options.hidden() or else
/// round_up(2 r D / 3, 8) so the parameter count matches the GELU MLP. Parameters: gate_proj,
/// up_proj [F, D], down_proj [D, F].
class SwiGluMlpImpl : public torch::nn::Cloneable<SwiGluMlpImpl> {
 public:
  explicit SwiGluMlpImpl(MlpOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  int64_t hidden() const;

  MlpOptions options;
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(SwiGluMlp);

}  // namespace hypnos::nn
