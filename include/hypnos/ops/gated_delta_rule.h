// The gated delta rule, hypnos's one SSM op (docs/delta_rule.md section 1), with three
// interchangeable backends. Layout follows fla so that fla can serve as an oracle on a GPU.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string_view>

namespace hypnos::ops {

/// Which implementation computes the op.
enum class GdnBackend {
  kAuto,       ///< kCuda for CUDA tensors when the kernels are built, else kChunked
  kReference,  ///< per-step recurrence: the definition (slow; the oracle)
  kChunked,    ///< WY/UT chunked form in ATen with a hand-derived backward (the CPU path)
  kCuda,       ///< the custom CUDA kernels of kernels/ (docs/delta_rule.md section 5)
};

/// Parses "auto" | "reference" | "chunked" | "cuda"; throws naming the value otherwise.
GdnBackend gdn_backend_from_name(std::string_view name);
std::string_view gdn_backend_name(GdnBackend backend);

struct GatedDeltaRuleOutput {
  at::Tensor o;            ///< o: [B, T, H, V], dtype of v
  at::Tensor final_state;  ///< S_T: [B, H, K, V], fp32 (double when the inputs are double)
};

/// S_t = a_t S_{t-1} + k_t u_t^T,  u_t = beta_t (v_t - (a_t S_{t-1})^T k_t),  a_t = exp(g_t),
/// o_t = scale * S_t^T q_t.
///
/// q, k: [B, T, H, K]; v: [B, T, H, V]; g (log decay, <= 0), beta: [B, T, H];
/// initial_state: [B, H, K, V] or nullopt (zeros). scale defaults to K^-0.5 when <= 0.
/// Differentiable in q, k, v, g, beta and initial_state, and takes the gradient of final_state.
/// Validates shapes, dtypes and devices once and throws naming the argument.
GatedDeltaRuleOutput gated_delta_rule(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& g, const at::Tensor& beta,
                                      const std::optional<at::Tensor>& initial_state,
                                      double scale = -1.0, GdnBackend backend = GdnBackend::kAuto);

/// Chunk length of the chunked backends (fla's default).
inline constexpr int64_t kGdnChunk = 64;

}  // namespace hypnos::ops
