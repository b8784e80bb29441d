// The dispatcher of ops/gdn_fused.h and the ATen compositions that define each op.
#include "ops/gdn_fused.h"

#include "cuda/gdn_fused_cuda.h"
#include "ops/fused_dispatch.h"

namespace hypnos::ops::fused {
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  // at::rms_norm is one fused kernel forward and one backward on CUDA (ATen's _fused_rms_norm).
  // It has no autocast rule, so a bf16 input is lifted here, as autocast's fp32 rule for pow did
  // for the six-op formula.
  const at::Tensor input =
      at::isReducedFloatingType(x.scalar_type()) ? x.to(weight.scalar_type()) : x;
  return at::rms_norm(input, {weight.size(0)}, weight, eps);
}

std::pair<at::Tensor, at::Tensor> causal_conv_silu(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& cache, const OpsOptions& ops) {
  return fused_or_composition(
      ops, x, [&] { return cuda::causal_conv_silu(x, weight, cache); },
      [&] { return reference::causal_conv_silu(x, weight, cache); });
}

std::pair<at::Tensor, at::Tensor> dynamic_conv_silu(const at::Tensor& x, const at::Tensor& kernel,
                                                    const at::Tensor& cache,
                                                    const OpsOptions& ops) {
  return fused_or_composition(
      ops, x, [&] { return cuda::dynamic_conv_silu(x, kernel, cache); },
      [&] { return reference::dynamic_conv_silu(x, kernel, cache); });
}

at::Tensor l2_normalize_heads(const at::Tensor& x, int64_t heads, bool silu,
                              const OpsOptions& ops) {
  return fused_or_composition(
      ops, x, [&] { return cuda::l2_normalize_heads(x, heads, silu); },
      [&] { return reference::l2_normalize_heads(x, heads, silu); });
}

std::pair<at::Tensor, at::Tensor> gdn_gates(const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& A_log, const at::Tensor& dt_bias,
                                            const OpsOptions& ops) {
  return fused_or_composition(
      ops, a, [&] { return cuda::gdn_gates(a, b, A_log, dt_bias); },
      [&] { return reference::gdn_gates(a, b, A_log, dt_bias); });
}

at::Tensor gated_rms_norm(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& weight,
                          double eps, const OpsOptions& ops) {
  return fused_or_composition(
      ops, x, [&] { return cuda::gated_rms_norm(x, gate, weight, eps); },
      [&] { return reference::gated_rms_norm(x, gate, weight, eps); });
}

namespace reference {

std::pair<at::Tensor, at::Tensor> causal_conv_silu(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& cache) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), W = weight.size(2);
  const at::Tensor left = cache.defined() ? cache : at::zeros({B, W - 1, C}, x.options());
  const at::Tensor padded = at::cat({left, x}, 1);  // [B, W-1+T, C]
  const std::array<int64_t, 1> stride{1}, padding{0}, dilation{1};
  const at::Tensor y = at::conv1d(padded.transpose(1, 2), weight, /*bias=*/at::Tensor(), stride,
                                  padding, dilation, /*groups=*/C)
                           .transpose(1, 2);
  return {at::silu(y), padded.narrow(1, T, W - 1)};
}

std::pair<at::Tensor, at::Tensor> dynamic_conv_silu(const at::Tensor& x, const at::Tensor& kernel,
                                                    const at::Tensor& cache) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), W = kernel.size(3);
  const at::Tensor left = cache.defined() ? cache : at::zeros({B, W - 1, C}, x.options());
  const at::Tensor padded = at::cat({left, x}, 1);    // [B, W-1+T, C]
  const at::Tensor windows = padded.unfold(1, W, 1);  // [B, T, C, W]
  return {at::silu((windows * kernel).sum(-1)), padded.narrow(1, T, W - 1)};
}

at::Tensor l2_normalize_heads(const at::Tensor& x, int64_t heads, bool silu) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2) / heads;
  const at::Tensor s = (silu ? at::silu(x) : x).view({B, T, heads, D});
  // The norm runs in fp32 under autocast and the quotient with it, hence the cast back.
  return (s / s.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12)).to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> gdn_gates(const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& A_log, const at::Tensor& dt_bias) {
  return {-A_log.exp() * at::softplus(a + dt_bias), at::sigmoid(b)};
}

at::Tensor gated_rms_norm(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& weight,
                          double eps) {
  const at::Tensor y = fused::rms_norm(x, weight, eps) * at::silu(gate).view(x.sizes());
  return y.reshape({x.size(0), x.size(1), -1});
}

}  // namespace reference
}  // namespace hypnos::ops::fused
