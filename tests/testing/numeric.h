// Numerical test helpers shared by hypnos's tests: relative error norms and a central
// finite-difference gradient checker (run it in double; LibTorch has no C++ gradcheck).
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

namespace hypnos::testing {

/// ||x - ref|| / ||ref|| in double (fla's metric). When ref is all zeros, ||x|| instead, so that a
/// zero reference still demands a zero result.
inline double relative_error(const at::Tensor& x, const at::Tensor& ref) {
  const at::Tensor xd = x.detach().to(at::kDouble).cpu(), rd = ref.detach().to(at::kDouble).cpu();
  const double den = rd.norm().item<double>();
  const double num = (xd - rd).norm().item<double>();
  return den > 0.0 ? num / den : num;
}

/// A scalar-valued function of several tensors (the loss whose gradient is checked).
using ScalarFunction = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

/// d f / d inputs[which] by central differences, (f(x + h e_i) - f(x - h e_i)) / 2h, for the
/// coordinates i of a deterministic stride through the flattened input (all when max_coords <= 0
/// or >= numel); the other coordinates of the result are NaN. inputs are not modified.
inline at::Tensor central_difference_gradient(const ScalarFunction& f,
                                              const std::vector<at::Tensor>& inputs, size_t which,
                                              double h = 1e-6, int64_t max_coords = 0) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> x;
  for (const at::Tensor& t : inputs) x.push_back(t.detach().clone());
  const int64_t n = x[which].numel();
  const int64_t m = (max_coords <= 0 || max_coords >= n) ? n : max_coords;
  at::Tensor grad = at::full(x[which].sizes(), std::nan(""), x[which].options());
  at::Tensor flat = x[which].view(-1), grad_flat = grad.view(-1);
  for (int64_t j = 0; j < m; ++j) {
    const int64_t i = j * n / m;
    const double x0 = flat[i].item<double>();
    flat[i].fill_(x0 + h);
    const double plus = f(x).item<double>();
    flat[i].fill_(x0 - h);
    const double minus = f(x).item<double>();
    flat[i].fill_(x0);
    grad_flat[i].fill_((plus - minus) / (2.0 * h));
  }
  return grad;
}

/// Relative error (over the checked coordinates) between the autograd gradient of f and central
/// differences, one entry per input. Inputs should be double.
inline std::vector<double> gradient_check_errors(const ScalarFunction& f,
                                                 const std::vector<at::Tensor>& inputs,
                                                 double h = 1e-6, int64_t max_coords = 0) {
  std::vector<at::Tensor> leaves;
  for (const at::Tensor& t : inputs) leaves.push_back(t.detach().clone().requires_grad_(true));
  const std::vector<at::Tensor> analytic =
      torch::autograd::grad({f(leaves)}, leaves, /*grad_outputs=*/{}, /*retain_graph=*/false,
                            /*create_graph=*/false, /*allow_unused=*/true);
  std::vector<double> errors;
  for (size_t w = 0; w < inputs.size(); ++w) {
    const at::Tensor numeric = central_difference_gradient(f, inputs, w, h, max_coords);
    const at::Tensor checked = numeric.isnan().logical_not();
    const at::Tensor a = analytic[w].defined() ? analytic[w] : at::zeros_like(numeric);
    errors.push_back(relative_error(a.masked_select(checked), numeric.masked_select(checked)));
  }
  return errors;
}

}  // namespace hypnos::testing
