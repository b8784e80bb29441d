// Gradient hygiene before an optimizer step: global-norm clipping (returning the norm for the
// metrics) and an exact non-finite check, so a bad step can be skipped before it touches weights.
#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

namespace hypnos::train {

/// The defined gradients of `params`, in order.
std::vector<at::Tensor> defined_grads(const std::vector<at::Tensor>& params);

/// A zero gradient for `param`: its shape and device, in its grad dtype (fp32 for the bf16
/// parameters of train.param_dtype: bf16, whose grad_dtype the Optimizer sets).
at::Tensor zero_gradient_for(const at::Tensor& param);

/// Global L2 norm of the gradients of `params` (those with a defined grad), accumulated in
/// float64 so large finite gradients do not overflow to inf. NaN or inf when a gradient is.
double grad_norm(const std::vector<at::Tensor>& params);

/// Scales every gradient by min(1, max_norm / (norm + 1e-6)) and returns the norm before clipping.
/// max_norm <= 0 disables clipping (the norm is still returned). A non-finite norm leaves the
/// gradients untouched (scaling would turn every gradient into NaN): the caller skips the step.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

/// True when every element of every defined gradient is finite (exact: isfinite, not the norm).
bool grads_are_finite(const std::vector<at::Tensor>& params);

}  // namespace hypnos::train
