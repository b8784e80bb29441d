// SwiGLU's fused gate kernel as a torch::autograd::Function.
#include "cuda/swiglu_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>

#include "cuda/kernel_status.h"
#include "swiglu.h"

namespace hypnos::nn::detail {
namespace {

using ops::throw_on_kernel_error;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

kernels::SiluMulParams params(const at::Tensor& h) {
  kernels::SiluMulParams p;
  p.h = h.data_ptr();
  p.features = h.size(-1) / 2;
  p.rows = h.numel() / h.size(-1);
  p.dtype =
      h.scalar_type() == at::kBFloat16 ? kernels::GdnDtype::kBFloat16 : kernels::GdnDtype::kFloat32;
  return p;
}

struct SiluMulFunction : torch::autograd::Function<SiluMulFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& h) {
    std::vector<int64_t> sizes = h.sizes().vec();
    sizes.back() /= 2;
    at::Tensor y = at::empty(sizes, h.options());
    kernels::SiluMulParams p = params(h);
    p.y = y.data_ptr();
    throw_on_kernel_error(kernels::silu_mul_fwd(p, at::cuda::getCurrentCUDAStream()), "SwiGLU",
                          "silu_mul_fwd");
    ctx->save_for_backward({h});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor h = ctx->get_saved_variables()[0];
    if (!grads[0].defined()) return {at::Tensor()};
    const at::Tensor grad_y = grads[0].to(h.scalar_type()).contiguous();
    at::Tensor grad_h = at::empty(h.sizes(), h.options());
    kernels::SiluMulParams p = params(h);
    p.grad_y = grad_y.data_ptr();
    p.grad_h = grad_h.data_ptr();
    throw_on_kernel_error(kernels::silu_mul_bwd(p, at::cuda::getCurrentCUDAStream()), "SwiGLU",
                          "silu_mul_bwd");
    return {grad_h};
  }
};

}  // namespace

std::optional<at::Tensor> silu_mul_cuda(const at::Tensor& h) {
  const bool dtype_ok = h.scalar_type() == at::kBFloat16 || h.scalar_type() == at::kFloat;
  if (!h.is_cuda() || !dtype_ok || !h.is_contiguous() || h.dim() < 1 || h.size(-1) % 2 != 0 ||
      h.numel() == 0) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(h.device());
  return SiluMulFunction::apply(h);
}

}  // namespace hypnos::nn::detail
