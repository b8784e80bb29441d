// GELU and SwiGLU MLPs of the pre-norm block.
#include "hypnos/nn/mlp.h"

#include "cuda/swiglu_cuda.h"
#include "ops/fused_dispatch.h"

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
  if (options.hidden() > 0) return options.hidden();
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
  // One matmul for the gate and up projections (the concatenated weights give each column its own
  // layer's dot product; the modules keep their names), then SiLU(g) * u: one kernel each way on a
  // GPU.
  const int64_t f = hidden();
  const at::Tensor h = at::linear(x, at::cat({gate_proj->weight, up_proj->weight}));  // [.., 2f]
  return down_proj(ops::fused_or_composition(
      options.ops(), h, [&] { return detail::silu_mul_cuda(h); },
      [&] {
        const auto gate_up = h.split(f, -1);  // one split: one concatenation in backward
        return at::silu(gate_up[0]) * gate_up[1];
      }));
}

}  // namespace hypnos::nn
