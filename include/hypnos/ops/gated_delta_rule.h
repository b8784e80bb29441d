// The gated delta rule, hypnos's one SSM op (docs/delta_rule.md section 1), with three
// interchangeable backends. Layout follows fla so that fla can serve as an oracle on a GPU.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string_view>

#include "hypnos/ops/ops_options.h"

namespace hypnos::ops {

/// Parses "auto" | "reference" | "chunked" | "cuda"; throws naming the value otherwise.
GdnBackend gdn_backend_from_name(std::string_view name);
std::string_view gdn_backend_name(GdnBackend backend);

struct GatedDeltaRuleOutput {
  at::Tensor o;            ///< o: [B, T, HV, V], dtype of v
  at::Tensor final_state;  ///< S_T: [N, HV, K, V] (N = B, or the packed sequences), fp32 (double
                           ///< when the inputs are double)
};

/// S_t = a_t S_{t-1} + k_t u_t^T,  u_t = beta_t (v_t - (a_t S_{t-1})^T k_t),  a_t = exp(g_t),
/// o_t = scale * S_t^T q_t.
///
/// q, k: [B, T, H, K]; v: [B, T, HV, V]; g (log decay, <= 0), beta: [B, T, HV];
/// initial_state: [N, HV, K, V] or nullopt (zeros), N = B without cu_seqlens. HV is H, or a
/// multiple of it (grouped value heads, fla's convention: value head h reads q, k head
/// h / (HV / H); o and the states have HV heads). scale defaults to K^-0.5 when <= 0.
/// Differentiable in q, k, v, g, beta and initial_state, and takes the gradient of final_state.
///
/// cu_seqlens packs variable-length sequences along T (fla's convention): B = 1 and cu_seqlens
/// holds the N + 1 offsets [0, ..., T], strictly increasing (no empty sequence), int32 or int64,
/// 1-D, on any device (it is read on the host). Sequence i is tokens [cu_seqlens[i],
/// cu_seqlens[i + 1]); it starts from initial_state[i] and ends in final_state[i], and nothing
/// crosses a boundary: the result equals each sequence run alone, with no padding to the longest
/// (chunked pads only each sequence's last chunk). Every backend takes it, each in one pass over
/// all sequences (the reference one sequence after another).
///
/// Validates shapes, dtypes, devices and cu_seqlens once, here (the backends and the CUDA kernels
/// take what passed), and throws std::invalid_argument naming the argument. ops.gdn_backend picks
/// the backend (auto: the CUDA kernels where they take the inputs, else chunked; an explicit cuda
/// on inputs they do not take throws naming the shape), ops.gdn_kernel and ops.gdn_scan_slice the
/// CUDA kernels.
GatedDeltaRuleOutput gated_delta_rule(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& g, const at::Tensor& beta,
                                      const std::optional<at::Tensor>& initial_state,
                                      double scale = -1.0, const OpsOptions& ops = {},
                                      const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

/// Chunk length of the chunked backends (fla's default).
inline constexpr int64_t kGdnChunk = 64;

}  // namespace hypnos::ops
