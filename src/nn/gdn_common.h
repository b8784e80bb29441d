// Internal: the parts GatedDeltaNet and JetBlock share (gates, the delta rule, gated output norm,
// and the A_log / dt_bias initialisation).
#pragma once
#include <ATen/ATen.h>

#include <utility>

#include "hypnos/nn/rms_norm.h"
#include "hypnos/ops/gated_delta_rule.h"

namespace hypnos::nn::detail {

/// Fills A_log [H] with log(U(1, 16)) and dt_bias [H] with softplus^-1(dt), dt log-uniform in
/// [1e-3, 0.1] (docs/paper.md; Mamba-2 / fla initialisation). Draws from the default generator,
/// like every other parameter initialiser of LibTorch modules.
void init_decay_parameters(at::Tensor& A_log, at::Tensor& dt_bias);

/// What GatedDeltaNet and JetBlock hand the shared core, once projected (and convolved).
struct DeltaRuleInputs {
  at::Tensor q, k;  ///< [B, T, H, K], activated and L2-normalised (ops::fused::l2_normalize_heads)
  at::Tensor v;     ///< [B, T, H, V], activated (cast to q's dtype by the core)
  at::Tensor gate;  ///< [B, T, H*V], before SiLU (the output gate)
  at::Tensor a, b;  ///< [B, T, H]: decay logits (dt_bias not added) and write strengths (logits)
};

/// The core both mixers share: beta = sigmoid(b); g = -exp(A_log) * softplus(a + dt_bias); the
/// gated delta rule from `initial_state` (undefined = zeros); then o_norm(o) * SiLU(gate). The
/// elementwise steps are the fused ops of ops/gdn_fused.h (one kernel each on CUDA). Returns {o:
/// [B, T, H*V] (before o_proj), final state [B, H, K, V]}.
std::pair<at::Tensor, at::Tensor> gated_delta_core(const DeltaRuleInputs& in,
                                                   const at::Tensor& A_log,
                                                   const at::Tensor& dt_bias,
                                                   const at::Tensor& initial_state, RMSNorm& o_norm,
                                                   const ops::OpsOptions& ops);

}  // namespace hypnos::nn::detail
