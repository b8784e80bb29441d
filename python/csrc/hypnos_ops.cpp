// torch.ops.hypnos.chunk_gated_delta_rule: hypnos's gated delta rule (ops/gated_delta_rule.h) for
// Python, in fla's layout and with fla's extras: grouped value heads (HV a multiple of H, each q/k
// head serving HV / H consecutive value heads), L2-normalised q and k, and packed variable-length
// batches (cu_seqlens, B = 1, one initial and final state per sequence). Registered as
// CompositeImplicitAutograd: the op's own autograd (its hand-derived backward) records the graph,
// so Python gets gradients for every differentiable input.
#include <torch/library.h>

#include <string>
#include <tuple>

#include "hypnos/ops/gated_delta_rule.h"

namespace hypnos::python {
namespace {

void check(bool ok, const std::string& message) {
  TORCH_CHECK(ok, "hypnos::chunk_gated_delta_rule: ", message);
}

std::string shape_of(const at::Tensor& t) {
  return c10::str(t.sizes());
}

// fla's l2norm: x * rsqrt(sum(x^2) + 1e-6) over the head dimension, in fp32.
at::Tensor l2_normalised(const at::Tensor& x) {
  const at::Tensor x32 = x.to(at::kFloat);
  return (x32 * at::rsqrt((x32 * x32).sum(-1, /*keepdim=*/true) + 1e-6)).to(x.scalar_type());
}

// cu_seqlens as host integers: [0, ..., T], increasing (no empty sequence), int32 or int64, 1-D.
std::vector<int64_t> sequence_offsets(const at::Tensor& cu_seqlens, int64_t T) {
  check(cu_seqlens.dim() == 1 && cu_seqlens.numel() >= 2,
        "cu_seqlens must be 1-D with at least 2 entries, got " + shape_of(cu_seqlens));
  check(cu_seqlens.scalar_type() == at::kLong || cu_seqlens.scalar_type() == at::kInt,
        "cu_seqlens must be int32 or int64");
  const at::Tensor host = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
  std::vector<int64_t> offsets(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
  check(offsets.front() == 0 && offsets.back() == T,
        "cu_seqlens must start at 0 and end at T = " + std::to_string(T) + ", got " +
            std::to_string(offsets.front()) + " ... " + std::to_string(offsets.back()));
  for (size_t i = 1; i < offsets.size(); ++i) {
    check(offsets[i] > offsets[i - 1],
          "cu_seqlens must be increasing: sequence " + std::to_string(i - 1) + " is empty");
  }
  return offsets;
}

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, double scale, const std::optional<at::Tensor>& initial_state,
    const std::optional<at::Tensor>& cu_seqlens, bool use_qk_l2norm, c10::string_view backend) {
  check(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
        "q, k and v must be [B, T, H, K], [B, T, H, K] and [B, T, HV, V]; got " + shape_of(q) +
            ", " + shape_of(k) + ", " + shape_of(v));
  const int64_t H = q.size(2), HV = v.size(2);
  check(H > 0 && HV % H == 0, "v's heads (" + std::to_string(HV) +
                                  ") must be a multiple of q's and k's (" + std::to_string(H) +
                                  ")");
  ops::OpsOptions chosen;
  chosen.gdn_backend = ops::gdn_backend_from_name(std::string(backend));
  at::Tensor qq = use_qk_l2norm ? l2_normalised(q) : q;
  at::Tensor kk = use_qk_l2norm ? l2_normalised(k) : k;
  if (HV != H) {  // grouped value heads: each q/k head serves HV / H consecutive value heads
    qq = qq.repeat_interleave(HV / H, 2);
    kk = kk.repeat_interleave(HV / H, 2);
  }
  if (!cu_seqlens.has_value()) {
    const auto out = ops::gated_delta_rule(qq, kk, v, g, beta, initial_state, scale, chosen);
    return {out.o, out.final_state};
  }
  // Packed sequences: each runs alone from its own initial state; nothing crosses a boundary.
  check(q.size(0) == 1, "with cu_seqlens the batch must be 1 (sequences packed along T), got B = " +
                            std::to_string(q.size(0)));
  const std::vector<int64_t> offsets = sequence_offsets(*cu_seqlens, q.size(1));
  const int64_t n = static_cast<int64_t>(offsets.size()) - 1;
  if (initial_state.has_value()) {
    check(initial_state->dim() == 4 && initial_state->size(0) == n,
          "with cu_seqlens initial_state must be [N, HV, K, V] with N = " + std::to_string(n) +
              " sequences, got " + shape_of(*initial_state));
  }
  std::vector<at::Tensor> outputs, finals;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = offsets[i], length = offsets[i + 1] - offsets[i];
    auto piece = [&](const at::Tensor& x) { return x.narrow(1, start, length); };
    std::optional<at::Tensor> h0;
    if (initial_state.has_value()) h0 = initial_state->narrow(0, i, 1);
    const auto out = ops::gated_delta_rule(piece(qq), piece(kk), piece(v), piece(g), piece(beta),
                                           h0, scale, chosen);
    outputs.push_back(out.o);
    finals.push_back(out.final_state);
  }
  return {at::cat(outputs, 1), at::cat(finals, 0)};
}

}  // namespace
}  // namespace hypnos::python

TORCH_LIBRARY(hypnos, m) {
  m.def(
      "chunk_gated_delta_rule(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, float scale, "
      "Tensor? initial_state, Tensor? cu_seqlens, bool use_qk_l2norm, str backend) -> (Tensor, "
      "Tensor)");
}

TORCH_LIBRARY_IMPL(hypnos, CompositeImplicitAutograd, m) {
  m.impl("chunk_gated_delta_rule", &hypnos::python::chunk_gated_delta_rule);
}
