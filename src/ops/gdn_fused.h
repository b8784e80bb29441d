// Internal: the elementwise and row-wise steps of a GatedDeltaNet / JetBlock layer around the
// delta rule, each as one differentiable op. On CUDA tensors they run the fused kernels of
// kernels/gdn_layer_ops.h (one kernel forward, one or two backward, instead of chains of ATen
// kernels per window and sleep pass); elsewhere, for dtypes and shapes the kernels do not take, or
// with ops.fused_ops off (ops/fused_dispatch.h decides), they run the ATen compositions in
// `reference`, which define them and which the GPU tests compare against.
#pragma once
#include <ATen/ATen.h>

#include <utility>

#include "hypnos/ops/ops_options.h"

namespace hypnos::ops::fused {

/// x * rsqrt(mean(x^2) + eps) * weight over the last dimension; a bf16 / fp16 input is lifted to
/// the weight's dtype first (RMSNorm's rule: the norm is computed and returned in fp32 there).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// SiLU of the causal depthwise convolution of x: [B, T, C] (a view with contiguous channels) with
/// weight [C, 1, W] over [cache; x], cache [B, W-1, C] (undefined = zeros). Returns {y [B, T, C],
/// the new cache: the last W-1 rows of [cache; x]} (the kernels write the cache as an output of
/// the op, so its gradient joins x's in the same backward kernel).
std::pair<at::Tensor, at::Tensor> causal_conv_silu(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& cache,
                                                   const OpsOptions& ops = {});

/// JetBlock's dynamic convolution: SiLU(sum_j kernel[b, t, c, j] * xp[b, t + j, c]) over
/// xp = [cache; x]; x [B, T, C] (a view with contiguous channels), kernel [B, T, C, W] (one kernel
/// per token), cache [B, W-1, C] (undefined = zeros). Returns {y [B, T, C], the new cache}. The
/// composition sums in fp32 under autocast (sum's rule) and returns fp32; the kernels return x's
/// dtype, which the delta rule casts to anyway.
std::pair<at::Tensor, at::Tensor> dynamic_conv_silu(const at::Tensor& x, const at::Tensor& kernel,
                                                    const at::Tensor& cache,
                                                    const OpsOptions& ops = {});

/// s / max(||s||_2, 1e-12) per head, s = SiLU(x) when `silu`, else x: x [B, T, H*D] -> [B, T, H, D]
/// in x's dtype (the norm is taken in fp32).
at::Tensor l2_normalize_heads(const at::Tensor& x, int64_t heads, bool silu,
                              const OpsOptions& ops = {});

/// {g, beta}: g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b); a, b: [B, T, H];
/// A_log, dt_bias: [H]. g is fp32 for bf16 a (promotion); beta is fp32 from the kernels and in b's
/// dtype from the composition (the delta rule computes both in fp32 either way).
std::pair<at::Tensor, at::Tensor> gdn_gates(const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& A_log, const at::Tensor& dt_bias,
                                            const OpsOptions& ops = {});

/// The gated output norm rms_norm(x, weight, eps) * SiLU(gate): x [B, T, H, D], gate [B, T, H*D],
/// weight [D] -> [B, T, H*D]. Under CUDA autocast the kernels return x's dtype (bf16), where the
/// composition returns fp32: the output projection that consumes it casts to bf16 either way.
at::Tensor gated_rms_norm(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& weight,
                          double eps, const OpsOptions& ops = {});

namespace reference {
std::pair<at::Tensor, at::Tensor> causal_conv_silu(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& cache);
std::pair<at::Tensor, at::Tensor> dynamic_conv_silu(const at::Tensor& x, const at::Tensor& kernel,
                                                    const at::Tensor& cache);
at::Tensor l2_normalize_heads(const at::Tensor& x, int64_t heads, bool silu);
std::pair<at::Tensor, at::Tensor> gdn_gates(const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& A_log, const at::Tensor& dt_bias);
at::Tensor gated_rms_norm(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& weight,
                          double eps);
}  // namespace reference

}  // namespace hypnos::ops::fused
