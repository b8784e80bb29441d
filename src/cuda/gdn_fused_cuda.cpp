// The fused CUDA ops of ops/gdn_fused.h as torch::autograd::Functions: they check what the kernels
// take (else the dispatcher runs the composition), allocate outputs and workspaces with ATen on the
// current stream (CUDA-graph safe: no host synchronisation), and call kernels/gdn_layer_ops.h.
#include "cuda/gdn_fused_cuda.h"

#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>

#include "cuda/kernel_status.h"
#include "gdn_layer_ops.h"

namespace hypnos::ops::fused::cuda {
namespace {

using kernels::GdnDtype;
using kernels::RowView;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool kernel_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kFloat;
}

GdnDtype dtype_of(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? GdnDtype::kBFloat16 : GdnDtype::kFloat32;
}

/// A [B, T, C] CUDA tensor whose channels are contiguous, read in place (slices of a fused
/// projection).
bool row_viewable(const at::Tensor& t) {
  return t.is_cuda() && t.dim() == 3 && t.stride(2) == 1;
}

/// An fp32 or bf16 parameter on `x`'s device. The kernels read fp32 parameters: a bf16 one
/// (train.param_dtype: bf16) enters as_fp32, a small vector or filter whose cast's backward returns
/// its gradient in bf16.
bool parameter_on_device_of(const at::Tensor& t, const at::Tensor& x) {
  return (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16) &&
         t.device() == x.device();
}

at::Tensor as_fp32(const at::Tensor& t) {
  return t.to(at::kFloat);  // the tensor itself when it is fp32
}

RowView row_view(const at::Tensor& t) {
  return {t.data_ptr(), t.stride(0), t.stride(1)};
}

/// Gradients arrive in any layout (and undefined when an output was not used).
at::Tensor dense(const at::Tensor& grad, at::IntArrayRef sizes, const at::TensorOptions& options) {
  return grad.defined() ? grad.to(options.dtype()).contiguous() : at::zeros(sizes, options);
}

cudaStream_t stream() {
  return at::cuda::getCurrentCUDAStream();
}

// ---------------------------------------------------------------- the two convolutions

// ConvSiluParams and DynamicConvSiluParams share kernels::ConvWindowParams ([cache; x] in, y and
// the next cache out, and the gradients of each); these fill it for either.

template <class Params>
Params window_params(const at::Tensor& x, const at::Tensor& cache, int64_t width) {
  Params params;
  kernels::ConvWindowParams& p = params;
  p.x = row_view(x);
  if (cache.defined()) p.cache = row_view(cache);
  p.batch = x.size(0);
  p.seq_len = x.size(1);
  p.channels = x.size(2);
  p.width = int(width);
  p.dtype = dtype_of(x);
  return params;
}

/// Allocates y [B, T, C] and the next cache [B, W-1, C] and points p at them.
variable_list window_outputs(kernels::ConvWindowParams& p, const at::Tensor& x) {
  at::Tensor y = at::empty({p.batch, p.seq_len, p.channels}, x.options());
  at::Tensor next = at::empty({p.batch, p.width - 1, p.channels}, x.options());
  p.y = y.data_ptr();
  p.next_cache = next.numel() > 0 ? next.data_ptr() : nullptr;
  return {y, next};
}

/// The incoming gradients made dense and the input gradients allocated, all pointed at by p.
struct WindowGrads {
  at::Tensor grad_y, grad_next, grad_x, grad_cache, grad_pre;
};

WindowGrads window_grads(kernels::ConvWindowParams& p, const at::Tensor& x, const at::Tensor& cache,
                         const variable_list& grads) {
  const int64_t B = p.batch, T = p.seq_len, C = p.channels, W = p.width;
  WindowGrads g;
  g.grad_y = dense(grads[0], x.sizes(), x.options());
  if (grads[1].defined() && grads[1].numel() > 0) {
    g.grad_next = grads[1].to(x.scalar_type()).contiguous();
  }
  g.grad_x = at::empty({B, T, C}, x.options());
  if (cache.defined()) g.grad_cache = at::empty({B, W - 1, C}, x.options());
  g.grad_pre = at::empty({B, T, C}, x.options().dtype(at::kFloat));
  p.grad_y = g.grad_y.data_ptr();
  p.grad_next_cache = g.grad_next.defined() ? g.grad_next.data_ptr() : nullptr;
  p.grad_x = g.grad_x.data_ptr();
  p.grad_cache =
      g.grad_cache.defined() && g.grad_cache.numel() > 0 ? g.grad_cache.data_ptr() : nullptr;
  p.grad_pre = g.grad_pre.data_ptr<float>();
  return g;
}

/// A window-start cache the kernels take for x and width W (undefined: zeros, always taken).
bool cache_fits(const at::Tensor& cache, const at::Tensor& x, int64_t W) {
  return !cache.defined() || (row_viewable(cache) && cache.scalar_type() == x.scalar_type() &&
                              cache.device() == x.device() && cache.size(0) == x.size(0) &&
                              cache.size(1) == W - 1 && cache.size(2) == x.size(2));
}

struct ConvSiluFunction : torch::autograd::Function<ConvSiluFunction> {
  /// Returns {y, the next window's cache}.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const std::optional<at::Tensor>& cache) {
    const at::Tensor w2 = weight.reshape({weight.size(0), weight.size(2)}).contiguous();
    const at::Tensor c = cache ? *cache : at::Tensor();
    auto p = window_params<kernels::ConvSiluParams>(x, c, w2.size(1));
    p.weight = w2.data_ptr<float>();
    variable_list out = window_outputs(p, x);
    throw_on_kernel_error(kernels::conv_silu_fwd(p, stream()), "gdn fused op", "conv_silu_fwd");
    ctx->save_for_backward({x, w2, c});
    ctx->saved_data["weight_sizes"] = weight.sizes().vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w2 = saved[1], &cache = saved[2];
    auto p = window_params<kernels::ConvSiluParams>(x, cache, w2.size(1));
    p.weight = w2.data_ptr<float>();
    const WindowGrads g = window_grads(p, x, cache, grads);
    const at::Tensor partial =
        at::empty({kernels::conv_silu_partials(p.batch, p.seq_len), p.channels, p.width},
                  x.options().dtype(at::kFloat));
    p.grad_weight_partial = partial.data_ptr<float>();
    throw_on_kernel_error(kernels::conv_silu_bwd(p, stream()), "gdn fused op", "conv_silu_bwd");
    const auto weight_sizes = ctx->saved_data["weight_sizes"].toIntVector();
    return {g.grad_x, partial.sum(0).view(weight_sizes), g.grad_cache};
  }
};

struct DynamicConvSiluFunction : torch::autograd::Function<DynamicConvSiluFunction> {
  /// Returns {y, the next window's cache}.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& kernel,
                               const std::optional<at::Tensor>& cache) {
    const at::Tensor c = cache ? *cache : at::Tensor();
    auto p = window_params<kernels::DynamicConvSiluParams>(x, c, kernel.size(3));
    p.kernel = kernel.data_ptr();
    variable_list out = window_outputs(p, x);
    throw_on_kernel_error(kernels::dynamic_conv_silu_fwd(p, stream()), "gdn fused op",
                          "dynamic_conv_silu_fwd");
    ctx->save_for_backward({x, kernel, c});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &kernel = saved[1], &cache = saved[2];
    auto p = window_params<kernels::DynamicConvSiluParams>(x, cache, kernel.size(3));
    p.kernel = kernel.data_ptr();
    const WindowGrads g = window_grads(p, x, cache, grads);
    const at::Tensor grad_kernel = at::empty(kernel.sizes(), kernel.options());
    p.grad_kernel = grad_kernel.data_ptr();
    throw_on_kernel_error(kernels::dynamic_conv_silu_bwd(p, stream()), "gdn fused op",
                          "dynamic_conv_silu_bwd");
    return {g.grad_x, grad_kernel, g.grad_cache};
  }
};

// ---------------------------------------------------------------- L2 norm

kernels::L2NormParams l2_params(const at::Tensor& x, int64_t heads, bool silu) {
  kernels::L2NormParams p;
  p.x = row_view(x);
  p.batch = x.size(0);
  p.seq_len = x.size(1);
  p.heads = heads;
  p.dim = int(x.size(2) / heads);
  p.silu = silu;
  p.dtype = dtype_of(x);
  return p;
}

struct L2NormFunction : torch::autograd::Function<L2NormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t heads, bool silu) {
    at::Tensor y = at::empty({x.size(0), x.size(1), heads, x.size(2) / heads}, x.options());
    kernels::L2NormParams p = l2_params(x, heads, silu);
    p.y = y.data_ptr();
    throw_on_kernel_error(kernels::l2norm_fwd(p, stream()), "gdn fused op", "l2norm_fwd");
    ctx->save_for_backward({x});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["silu"] = silu;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const at::Tensor grad_y =
        dense(grads[0], {x.size(0), x.size(1), heads, x.size(2) / heads}, x.options());
    const at::Tensor grad_x = at::empty({x.size(0), x.size(1), x.size(2)}, x.options());
    kernels::L2NormParams p = l2_params(x, heads, ctx->saved_data["silu"].toBool());
    p.grad_y = grad_y.data_ptr();
    p.grad_x = grad_x.data_ptr();
    throw_on_kernel_error(kernels::l2norm_bwd(p, stream()), "gdn fused op", "l2norm_bwd");
    return {grad_x, at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------- gates

kernels::GatesParams gates_params(const at::Tensor& a, const at::Tensor& b, const at::Tensor& A_log,
                                  const at::Tensor& dt_bias) {
  kernels::GatesParams p;
  p.a = row_view(a);
  p.b = row_view(b);
  p.A_log = A_log.data_ptr<float>();
  p.dt_bias = dt_bias.data_ptr<float>();
  p.batch = a.size(0);
  p.seq_len = a.size(1);
  p.heads = a.size(2);
  p.dtype = dtype_of(a);
  return p;
}

struct GatesFunction : torch::autograd::Function<GatesFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                               const at::Tensor& A_log, const at::Tensor& dt_bias) {
    const auto f32 = a.options().dtype(at::kFloat);
    at::Tensor g = at::empty(a.sizes(), f32), beta = at::empty(a.sizes(), f32);
    kernels::GatesParams p = gates_params(a, b, A_log, dt_bias);
    p.g = g.data_ptr<float>();
    p.beta = beta.data_ptr<float>();
    throw_on_kernel_error(kernels::gates_fwd(p, stream()), "gdn fused op", "gates_fwd");
    ctx->save_for_backward({a, b, A_log, dt_bias});
    return {g, beta};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &a = saved[0], &b = saved[1], &A_log = saved[2], &dt_bias = saved[3];
    const auto f32 = a.options().dtype(at::kFloat);
    const at::Tensor grad_g = dense(grads[0], a.sizes(), f32);
    const at::Tensor grad_beta = dense(grads[1], a.sizes(), f32);
    const at::Tensor grad_a = at::empty(a.sizes(), a.options());
    const at::Tensor grad_b = at::empty(b.sizes(), b.options());
    const at::Tensor terms = at::empty({2, a.size(0) * a.size(1), a.size(2)}, f32);
    kernels::GatesParams p = gates_params(a, b, A_log, dt_bias);
    p.grad_g = grad_g.data_ptr<float>();
    p.grad_beta = grad_beta.data_ptr<float>();
    p.grad_a = grad_a.data_ptr();
    p.grad_b = grad_b.data_ptr();
    p.grad_terms = terms.data_ptr<float>();
    throw_on_kernel_error(kernels::gates_bwd(p, stream()), "gdn fused op", "gates_bwd");
    const at::Tensor sums = terms.sum(1);  // [2, H]: d A_log, d dt_bias
    return {grad_a, grad_b, sums[0], sums[1]};
  }
};

// ---------------------------------------------------------------- gated RMS norm

kernels::GatedNormParams norm_params(const at::Tensor& x, const at::Tensor& gate,
                                     const at::Tensor& weight, double eps) {
  kernels::GatedNormParams p;
  p.x = x.data_ptr();
  p.gate = row_view(gate);
  p.weight = weight.data_ptr<float>();
  p.batch = x.size(0);
  p.seq_len = x.size(1);
  p.heads = x.size(2);
  p.dim = int(x.size(3));
  p.eps = float(eps);
  p.dtype = dtype_of(x);
  return p;
}

struct GatedNormFunction : torch::autograd::Function<GatedNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gate,
                            const at::Tensor& weight, double eps) {
    at::Tensor y = at::empty({x.size(0), x.size(1), x.size(2) * x.size(3)}, x.options());
    kernels::GatedNormParams p = norm_params(x, gate, weight, eps);
    p.y = y.data_ptr();
    throw_on_kernel_error(kernels::gated_norm_fwd(p, stream()), "gdn fused op", "gated_norm_fwd");
    ctx->save_for_backward({x, gate, weight});
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &gate = saved[1], &weight = saved[2];
    const int64_t rows = x.size(0) * x.size(1) * x.size(2);
    const at::Tensor grad_y =
        dense(grads[0], {x.size(0), x.size(1), x.size(2) * x.size(3)}, x.options());
    const at::Tensor grad_x = at::empty(x.sizes(), x.options());
    const at::Tensor grad_gate = at::empty(grad_y.sizes(), gate.options());
    const at::Tensor partial =
        at::empty({kernels::gated_norm_partials(rows), x.size(3)}, x.options().dtype(at::kFloat));
    kernels::GatedNormParams p = norm_params(x, gate, weight, ctx->saved_data["eps"].toDouble());
    p.grad_y = grad_y.data_ptr();
    p.grad_x = grad_x.data_ptr();
    p.grad_gate = grad_gate.data_ptr();
    p.grad_weight_partial = partial.data_ptr<float>();
    throw_on_kernel_error(kernels::gated_norm_bwd(p, stream()), "gdn fused op", "gated_norm_bwd");
    return {grad_x, grad_gate, partial.sum(0), at::Tensor()};
  }
};

bool head_rows_fit(int64_t dim) {
  return dim >= 1 && dim <= 256;
}

/// The convolution kernels take fewer than kConvIndexLimit elements of [cache; x]; larger inputs
/// take the composition.
bool conv_index_fits(const at::Tensor& x, int64_t width) {
  return x.size(0) * (x.size(1) + width - 1) * x.size(2) < kernels::kConvIndexLimit;
}

}  // namespace

std::optional<std::pair<at::Tensor, at::Tensor>> causal_conv_silu(const at::Tensor& x,
                                                                  const at::Tensor& weight,
                                                                  const at::Tensor& cache) {
  const int64_t W = weight.dim() == 3 ? weight.size(2) : 0;
  if (!row_viewable(x) || !kernel_dtype(x) || !parameter_on_device_of(weight, x) ||
      weight.dim() != 3 || weight.size(0) != x.size(2) || weight.size(1) != 1 || W < 1 ||
      W > kernels::kMaxConvWidth) {
    return std::nullopt;
  }
  if (!cache_fits(cache, x, W) || !conv_index_fits(x, W)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  const auto out = ConvSiluFunction::apply(
      x, as_fp32(weight), cache.defined() ? std::optional<at::Tensor>(cache) : std::nullopt);
  return std::pair{out[0], out[1]};
}

std::optional<std::pair<at::Tensor, at::Tensor>> dynamic_conv_silu(const at::Tensor& x,
                                                                   const at::Tensor& kernel,
                                                                   const at::Tensor& cache) {
  if (!row_viewable(x) || !kernel_dtype(x) || kernel.scalar_type() != x.scalar_type() ||
      kernel.device() != x.device() || kernel.dim() != 4 || !kernel.is_contiguous() ||
      kernel.size(0) != x.size(0) || kernel.size(1) != x.size(1) || kernel.size(2) != x.size(2) ||
      kernel.size(3) < 1 || kernel.size(3) > kernels::kMaxConvWidth) {
    return std::nullopt;
  }
  if (!cache_fits(cache, x, kernel.size(3)) || !conv_index_fits(x, kernel.size(3))) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const auto out = DynamicConvSiluFunction::apply(
      x, kernel, cache.defined() ? std::optional<at::Tensor>(cache) : std::nullopt);
  return std::pair{out[0], out[1]};
}

std::optional<at::Tensor> l2_normalize_heads(const at::Tensor& x, int64_t heads, bool silu) {
  if (!row_viewable(x) || !kernel_dtype(x) || heads < 1 || x.size(2) % heads != 0 ||
      !head_rows_fit(x.size(2) / heads)) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  return L2NormFunction::apply(x, heads, silu);
}

std::optional<std::pair<at::Tensor, at::Tensor>> gdn_gates(const at::Tensor& a, const at::Tensor& b,
                                                           const at::Tensor& A_log,
                                                           const at::Tensor& dt_bias) {
  const auto is_head_vector = [&](const at::Tensor& t) {
    return parameter_on_device_of(t, a) && t.dim() == 1 && t.size(0) == a.size(2) &&
           t.is_contiguous();
  };
  if (!row_viewable(a) || !row_viewable(b) || !kernel_dtype(a) ||
      b.scalar_type() != a.scalar_type() || b.sizes() != a.sizes() || b.device() != a.device() ||
      !is_head_vector(A_log) || !is_head_vector(dt_bias)) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(a.device());
  const auto out = GatesFunction::apply(a, b, as_fp32(A_log), as_fp32(dt_bias));
  return std::pair{out[0], out[1]};
}

std::optional<at::Tensor> gated_rms_norm(const at::Tensor& x, const at::Tensor& gate,
                                         const at::Tensor& weight, double eps) {
  // Outside autocast a bf16 x would give bf16 here but fp32 from the composition (RMSNorm lifts
  // it): keep the composition's dtype contract there.
  const bool dtype_ok =
      x.scalar_type() == at::kFloat ||
      (x.scalar_type() == at::kBFloat16 && at::autocast::is_autocast_enabled(at::kCUDA));
  if (!x.is_cuda() || x.dim() != 4 || !dtype_ok || !row_viewable(gate) ||
      gate.scalar_type() != x.scalar_type() || gate.size(0) != x.size(0) ||
      gate.size(1) != x.size(1) || gate.size(2) != x.size(2) * x.size(3) ||
      gate.device() != x.device() || !parameter_on_device_of(weight, x) || weight.dim() != 1 ||
      weight.size(0) != x.size(3) || !weight.is_contiguous() || !head_rows_fit(x.size(3))) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  return GatedNormFunction::apply(x.contiguous(), gate, as_fp32(weight), eps);
}

}  // namespace hypnos::ops::fused::cuda
