// RMSNorm, as in the reference (sleep_reference.py RMSNorm).
#include "hypnos/nn/rms_norm.h"

namespace hypnos::nn {

RMSNormImpl::RMSNormImpl(RMSNormOptions options_) : options(options_) {
  reset();
}

void RMSNormImpl::reset() {
  weight = register_parameter("weight", torch::ones({options.dim()}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + options.eps()) * weight;
}

}  // namespace hypnos::nn
