// The CPU backends of the gated delta rule behind the validating dispatcher of
// include/hypnos/ops/gated_delta_rule.h; tests call them directly to choose the chunk length.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "hypnos/ops/gated_delta_rule.h"

namespace hypnos::ops::detail {

// Both take validated inputs already in the compute dtype (fp32 or double) and a resolved scale >
// 0; an undefined initial_state means zeros (and no gradient). Both are differentiable through
// autograd.
//   q, k: [B, T, H, K]   v: [B, T, H, V]   g, beta: [B, T, H]   initial_state: [N, H, K, V]
// cu_seqlens empty: N = B sequences of T tokens. Otherwise the validated host offsets
// [0, ..., T] (strictly increasing) of N = cu_seqlens.size() - 1 sequences packed along T, B = 1:
// sequence i is tokens [cu_seqlens[i], cu_seqlens[i + 1]), starts from initial_state[i] and ends
// in final_state[i]; nothing crosses a boundary.

/// The per-step recurrence, differentiated by ordinary autograd: the definition and the oracle.
GatedDeltaRuleOutput gated_delta_rule_reference(const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, const at::Tensor& g,
                                                const at::Tensor& beta,
                                                const at::Tensor& initial_state, double scale,
                                                const std::vector<int64_t>& cu_seqlens = {});

/// The WY/UT chunked form with its hand-derived backward (docs/delta_rule.md sections 2 and 3),
/// chunks of min(chunk, longest sequence) tokens (each sequence zero-padded up to a multiple:
/// g = 0, beta = 0 there is exact). Packed sequences run in one pass: every sequence is cut into
/// its own chunks, and all chunks of all sequences form one batch.
GatedDeltaRuleOutput gated_delta_rule_chunked(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, const at::Tensor& g,
                                              const at::Tensor& beta,
                                              const at::Tensor& initial_state, double scale,
                                              int64_t chunk = kGdnChunk,
                                              const std::vector<int64_t>& cu_seqlens = {});

/// How many calls of gated_delta_rule each backend has run in this process (the resolved backend,
/// never kAuto): lets a test see that a model's `gdn_backend` reaches the op.
int64_t gdn_backend_runs(GdnBackend backend);

}  // namespace hypnos::ops::detail
