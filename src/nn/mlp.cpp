// GELU and SwiGLU MLPs of the pre-norm block.
#include "hypnos/nn/mlp.h"

namespace hypnos::nn {
namespace {
torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}
}  // namespace

GeluMlpImpl::GeluMlpImpl(MlpOptions options_) : options(options_) {
  reset();
}

void GeluMlpImpl::reset() {
  const int64_t d = options.d_model(), hidden = options.ratio() * d;
  up_proj = register_module("up_proj", linear(d, hidden));
  down_proj = register_module("down_proj", linear(hidden, d));
}

at::Tensor GeluMlpImpl::forward(const at::Tensor& x) {
  return down_proj(at::gelu(up_proj(x)));
}

SwiGluMlpImpl::SwiGluMlpImpl(MlpOptions options_) : options(options_) {
  reset();
}

int64_t SwiGluMlpImpl::hidden() const {
  const int64_t f = (2 * options.ratio() * options.d_model() + 2) / 3;
  return (f + 7) / 8 * 8;
}

void SwiGluMlpImpl::reset() {
  const int64_t d = options.d_model(), f = hidden();
  gate_proj = register_module("gate_proj", linear(d, f));
  up_proj = register_module("up_proj", linear(d, f));
  down_proj = register_module("down_proj", linear(f, d));
}

at::Tensor SwiGluMlpImpl::forward(const at::Tensor& x) {
  return down_proj(at::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace hypnos::nn
