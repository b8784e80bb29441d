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
  // at::rms_norm is one fused kernel forward and one backward on CUDA (ATen's _fused_rms_norm);
  // elsewhere it is the formula above. It has no autocast rule, so a bf16 input (the delta rule's
  // output under autocast) is lifted to the weight's dtype first: the norm is computed and
  // returned in fp32 there, as the six-op formula did under autocast's fp32 rule for pow.
  const at::Tensor input =
      at::isReducedFloatingType(x.scalar_type()) ? x.to(weight.scalar_type()) : x;
  return at::rms_norm(input, {options.dim()}, weight, options.eps());
}

}  // namespace hypnos::nn
