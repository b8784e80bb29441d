// The gated delta rule as its definition: one state update per token, differentiated by autograd.
// Slow (T sequential small ops) but obviously right; every other backend is tested against it.
// Packed sequences (cu_seqlens) run one after another, each from its own initial state.
#include "ops/gated_delta_rule_backends.h"

namespace hypnos::ops::detail {
namespace {

// B sequences of T tokens.
GatedDeltaRuleOutput recurrence(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& g, const at::Tensor& beta,
                                const at::Tensor& initial_state, double scale) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
  // S: [B, H, K, V]
  at::Tensor S = initial_state.defined() ? initial_state : at::zeros({B, H, K, V}, q.options());
  std::vector<at::Tensor> outs;
  outs.reserve(T);
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor a = g.select(1, t).exp().unsqueeze(-1).unsqueeze(-1);  // [B, H, 1, 1]
    const at::Tensor k_t = k.select(1, t).unsqueeze(-2);                    // [B, H, 1, K]
    const at::Tensor q_t = q.select(1, t).unsqueeze(-2) * scale;            // [B, H, 1, K]
    S = S * a;
    // u: [B, H, 1, V] = beta_t (v_t - (a_t S_{t-1})^T k_t)
    const at::Tensor u = (v.select(1, t).unsqueeze(-2) - at::matmul(k_t, S)) *
                         beta.select(1, t).unsqueeze(-1).unsqueeze(-1);
    S = S + at::matmul(k_t.transpose(-1, -2), u);
    outs.push_back(at::matmul(q_t, S).squeeze(-2));  // [B, H, V]
  }
  return {at::stack(outs, /*dim=*/1), S};
}

}  // namespace

GatedDeltaRuleOutput gated_delta_rule_reference(const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, const at::Tensor& g,
                                                const at::Tensor& beta,
                                                const at::Tensor& initial_state, double scale,
                                                const std::vector<int64_t>& cu_seqlens) {
  if (cu_seqlens.empty()) return recurrence(q, k, v, g, beta, initial_state, scale);
  // The recurrence restarts at each offset from that sequence's initial state.
  std::vector<at::Tensor> outs, finals;
  for (size_t i = 0; i + 1 < cu_seqlens.size(); ++i) {
    const int64_t start = cu_seqlens[i], length = cu_seqlens[i + 1] - cu_seqlens[i];
    const auto piece = [&](const at::Tensor& x) { return x.narrow(1, start, length); };
    const at::Tensor h0 = initial_state.defined()
                              ? initial_state.narrow(0, static_cast<int64_t>(i), 1)
                              : at::Tensor();
    GatedDeltaRuleOutput out =
        recurrence(piece(q), piece(k), piece(v), piece(g), piece(beta), h0, scale);
    outs.push_back(out.o);
    finals.push_back(out.final_state);
  }
  return {at::cat(outs, /*dim=*/1), at::cat(finals, /*dim=*/0)};
}

}  // namespace hypnos::ops::detail
