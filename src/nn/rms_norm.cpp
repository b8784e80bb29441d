// RMSNorm, as in the reference (sleep_reference.py RMSNorm).
#include "hypnos/nn/rms_norm.h"

#include "ops/gdn_fused.h"

namespace hypnos::nn {

RMSNormImpl::RMSNormImpl(RMSNormOptions options_) : options(options_) {
  reset();
}

void RMSNormImpl::reset() {
  weight = register_parameter("weight", torch::ones({options.dim()}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  return ops::fused::rms_norm(x, weight, options.eps());
}

}  // namespace hypnos::nn
