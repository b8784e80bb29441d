// torch.ops.hypnos.chunk_gated_delta_rule: hypnos's gated delta rule (ops/gated_delta_rule.h) for
// Python, in fla's layout and with fla's extras: grouped value heads (HV a multiple of H, each q/k
// head serving HV / H consecutive value heads), L2-normalised q and k, and packed variable-length
// batches (cu_seqlens, B = 1, one initial and final state per sequence); the C++ op takes the
// groups and the packing itself.
// Registered as CompositeImplicitAutograd: the op's own autograd (its hand-derived backward)
// records the graph, so Python gets gradients for every differentiable input.
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

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, double scale, const std::optional<at::Tensor>& initial_state,
    const std::optional<at::Tensor>& cu_seqlens, bool use_qk_l2norm, c10::string_view backend) {
  check(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
        "q, k and v must be [B, T, H, K], [B, T, H, K] and [B, T, HV, V]; got " + shape_of(q) +
            ", " + shape_of(k) + ", " + shape_of(v));
  ops::OpsOptions chosen;
  chosen.gdn_backend = ops::gdn_backend_from_name(std::string(backend));
  const at::Tensor qq = use_qk_l2norm ? l2_normalised(q) : q;
  const at::Tensor kk = use_qk_l2norm ? l2_normalised(k) : k;
  // Grouped value heads and packed sequences are the op's own: it validates them, the CUDA kernels
  // read each q, k head for its group of value heads without copies, and all sequences run in one
  // pass.
  const auto out =
      ops::gated_delta_rule(qq, kk, v, g, beta, initial_state, scale, chosen, cu_seqlens);
  return {out.o, out.final_state};
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
