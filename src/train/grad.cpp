// Global-norm clipping and the non-finite check; one host sync each (the norm goes to the host).
#include "hypnos/train/grad.h"

namespace hypnos::train {

std::vector<at::Tensor> defined_grads(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  return grads;
}

at::Tensor zero_gradient_for(const at::Tensor& param) {
  const at::ScalarType dtype = param.grad_dtype().value_or(param.scalar_type());
  return at::zeros_like(param, param.options().dtype(dtype));
}

double grad_norm(const std::vector<at::Tensor>& params) {
  const auto grads = defined_grads(params);
  if (grads.empty()) return 0.0;
  // One fused kernel for the per-tensor norms (a launch per tensor would dominate on a GPU), in
  // float64 so that squares of large finite float32 gradients do not overflow.
  const auto norms = at::_foreach_norm(grads, 2, at::kDouble);
  return at::linalg_vector_norm(at::stack(norms), 2).item<double>();
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (max_norm <= 0.0 || !std::isfinite(norm)) return norm;
  const double coefficient = max_norm / (norm + 1e-6);
  if (coefficient < 1.0) {
    at::NoGradGuard no_grad;
    auto grads = defined_grads(params);
    at::_foreach_mul_(grads, coefficient);
  }
  return norm;
}

bool grads_are_finite(const std::vector<at::Tensor>& params) {
  const auto grads = defined_grads(params);
  if (grads.empty()) return true;
  std::vector<at::Tensor> flags;
  flags.reserve(grads.size());
  for (const auto& g : grads) flags.push_back(at::isfinite(g).all());
  return at::stack(flags).all().item<bool>();
}

}  // namespace hypnos::train
