// RoPE's fused CUDA kernel as a torch::autograd::Function: the output and the gradient are written
// contiguous [B, H, T, D] in x's dtype, as the composition's .to(x.scalar_type()) gives.
#include "cuda/rope_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>

#include "cuda/kernel_status.h"
#include "rope.h"

namespace hypnos::nn::detail {
namespace {

using ops::throw_on_kernel_error;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

kernels::RopeParams rope_params(at::IntArrayRef sizes, at::ScalarType dtype, const at::Tensor& cos,
                                const at::Tensor& sin) {
  kernels::RopeParams p;
  p.cos = cos.data_ptr<float>();
  p.sin = sin.data_ptr<float>();
  p.table_stride = cos.stride(0);
  p.batch = sizes[0];
  p.heads = sizes[1];
  p.seq_len = sizes[2];
  p.dim = int(sizes[3]);
  p.dtype = dtype == at::kBFloat16 ? kernels::GdnDtype::kBFloat16 : kernels::GdnDtype::kFloat32;
  return p;
}

struct RopeFunction : torch::autograd::Function<RopeFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    at::Tensor y = at::empty(x.sizes(), x.options());
    kernels::RopeParams p = rope_params(x.sizes(), x.scalar_type(), cos, sin);
    p.x = x.data_ptr();
    p.stride_b = x.stride(0);
    p.stride_h = x.stride(1);
    p.stride_t = x.stride(2);
    p.y = y.data_ptr();
    throw_on_kernel_error(kernels::rope_fwd(p, at::cuda::getCurrentCUDAStream()), "apply_rope",
                          "rope_fwd");
    ctx->save_for_backward({cos, sin});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &cos = saved[0], &sin = saved[1];
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor grad_y = grad.contiguous();
    at::Tensor grad_x = at::empty(grad_y.sizes(), grad_y.options());
    kernels::RopeParams p = rope_params(grad_y.sizes(), grad_y.scalar_type(), cos, sin);
    p.grad_y = grad_y.data_ptr();
    p.grad_x = grad_x.data_ptr();
    throw_on_kernel_error(kernels::rope_bwd(p, at::cuda::getCurrentCUDAStream()), "apply_rope",
                          "rope_bwd");
    return {grad_x, at::Tensor(), at::Tensor()};
  }
};

bool table_ok(const at::Tensor& t, const at::Tensor& x) {
  return t.scalar_type() == at::kFloat && t.device() == x.device() && t.dim() == 2 &&
         t.stride(1) == 1 && !t.requires_grad();
}

}  // namespace

std::optional<at::Tensor> apply_rope_cuda(const at::Tensor& x, const RopeTable& table) {
  const bool dtype_ok = x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat;
  if (!x.is_cuda() || !dtype_ok || x.stride(3) != 1 || x.numel() == 0 || !table_ok(table.cos, x) ||
      !table_ok(table.sin, x) || table.sin.sizes() != table.cos.sizes() ||
      table.cos.stride(0) != table.sin.stride(0)) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  return RopeFunction::apply(x, table.cos, table.sin);
}

}  // namespace hypnos::nn::detail
