// Entry point of the gated delta rule: validates the arguments once, cu_seqlens included (the one
// validation: the backends and the CUDA wrapper take what passed here), chooses the backend
// (ops/gdn_backend_choice.h), casts to the compute dtype (fp32, or double for double inputs) and
// hands over.
#include "hypnos/ops/gated_delta_rule.h"

#include <array>
#include <atomic>
#include <string>
#include <vector>

#include "cuda/gated_delta_rule_cuda.h"
#include "ops/fused_dispatch.h"
#include "ops/gated_delta_rule_backends.h"
#include "ops/gdn_backend_choice.h"

namespace hypnos::ops {
namespace {

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

// Throws "gated_delta_rule: <name> has shape [..], expected [..] (<letters>)" on any mismatch.
void check_shape(const at::Tensor& x, std::string_view name, std::vector<int64_t> expected,
                 std::string_view letters) {
  if (x.sizes() != at::IntArrayRef(expected)) {
    throw std::invalid_argument("gated_delta_rule: " + std::string(name) + " has shape " +
                                shape_str(x.sizes()) + ", expected " + shape_str(expected) + " " +
                                std::string(letters));
  }
}

void check_dtype(const at::Tensor& x, std::string_view name) {
  const auto t = x.scalar_type();
  if (t != at::kFloat && t != at::kDouble && t != at::kBFloat16 && t != at::kHalf) {
    throw std::invalid_argument("gated_delta_rule: " + std::string(name) + " has dtype " +
                                std::string(c10::toString(t)) +
                                ", expected float, double, bfloat16 or half");
  }
}

void check_device(const at::Tensor& x, std::string_view name, const at::Device& device) {
  if (x.device() != device) {
    throw std::invalid_argument("gated_delta_rule: " + std::string(name) + " is on " +
                                x.device().str() + ", expected " + device.str() +
                                " (the device of q)");
  }
}

void check_defined(const at::Tensor& x, std::string_view name) {
  if (!x.defined()) {
    throw std::invalid_argument("gated_delta_rule: " + std::string(name) + " is undefined");
  }
}

// cu_seqlens as host offsets [0, ..., T], strictly increasing, for q of shape [1, T, ...].
std::vector<int64_t> sequence_offsets(const at::Tensor& cu_seqlens, const at::Tensor& q) {
  if (!cu_seqlens.defined()) {
    throw std::invalid_argument("gated_delta_rule: cu_seqlens is an undefined tensor");
  }
  if (cu_seqlens.dim() != 1 || cu_seqlens.numel() < 2) {
    throw std::invalid_argument("gated_delta_rule: cu_seqlens has shape " +
                                shape_str(cu_seqlens.sizes()) +
                                ", expected 1-D [N + 1] offsets of N >= 1 sequences");
  }
  const auto t = cu_seqlens.scalar_type();
  if (t != at::kLong && t != at::kInt) {
    throw std::invalid_argument("gated_delta_rule: cu_seqlens has dtype " +
                                std::string(c10::toString(t)) + ", expected int32 or int64");
  }
  if (q.size(0) != 1) {
    throw std::invalid_argument(
        "gated_delta_rule: with cu_seqlens the batch must be 1 (sequences packed along T), got "
        "B = " +
        std::to_string(q.size(0)) + " (q has shape " + shape_str(q.sizes()) + ")");
  }
  const at::Tensor host = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
  std::vector<int64_t> offsets(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
  const int64_t T = q.size(1);
  if (offsets.front() != 0 || offsets.back() != T) {
    throw std::invalid_argument(
        "gated_delta_rule: cu_seqlens must start at 0 and end at T = " + std::to_string(T) +
        " (q's length), got " + std::to_string(offsets.front()) + " ... " +
        std::to_string(offsets.back()));
  }
  for (size_t i = 1; i < offsets.size(); ++i) {
    if (offsets[i] <= offsets[i - 1]) {
      throw std::invalid_argument(
          "gated_delta_rule: cu_seqlens must be strictly increasing, but cu_seqlens[" +
          std::to_string(i - 1) + "] = " + std::to_string(offsets[i - 1]) + " and cu_seqlens[" +
          std::to_string(i) + "] = " + std::to_string(offsets[i]) + ": sequence " +
          std::to_string(i - 1) + (offsets[i] == offsets[i - 1] ? " is empty" : " is negative"));
    }
  }
  return offsets;
}

// Returns cu_seqlens as host offsets (empty without it).
std::vector<int64_t> validate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& g, const at::Tensor& beta,
                              const std::optional<at::Tensor>& initial_state,
                              const std::optional<at::Tensor>& cu_seqlens) {
  check_defined(q, "q");
  check_defined(k, "k");
  check_defined(v, "v");
  check_defined(g, "g");
  check_defined(beta, "beta");
  if (q.dim() != 4 || q.numel() == 0) {
    throw std::invalid_argument("gated_delta_rule: q has shape " + shape_str(q.sizes()) +
                                ", expected a non-empty [B, T, H, K]");
  }
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3);
  check_shape(k, "k", {B, T, H, K}, "[B, T, H, K] of q");
  if (v.dim() != 4 || v.size(0) != B || v.size(1) != T || v.size(2) % H != 0 || v.size(2) == 0 ||
      v.size(3) == 0) {
    throw std::invalid_argument(
        "gated_delta_rule: v has shape " + shape_str(v.sizes()) + ", expected [" +
        std::to_string(B) + ", " + std::to_string(T) +
        ", HV, V] ([B, T] of q, HV a multiple of q's H = " + std::to_string(H) + ", V >= 1)");
  }
  const int64_t HV = v.size(2), V = v.size(3);
  check_shape(g, "g", {B, T, HV}, "[B, T, HV]");
  check_shape(beta, "beta", {B, T, HV}, "[B, T, HV]");
  std::vector<int64_t> offsets;
  if (cu_seqlens.has_value()) offsets = sequence_offsets(*cu_seqlens, q);
  const bool has_state = initial_state.has_value() && initial_state->defined();
  if (has_state && offsets.empty()) {
    check_shape(*initial_state, "initial_state", {B, HV, K, V}, "[B, HV, K, V]");
  } else if (has_state) {
    const auto N = static_cast<int64_t>(offsets.size()) - 1;
    check_shape(*initial_state, "initial_state", {N, HV, K, V},
                "[N, HV, K, V] (N = " + std::to_string(N) + " sequences in cu_seqlens)");
  }

  check_dtype(q, "q");
  check_dtype(k, "k");
  check_dtype(v, "v");
  check_dtype(g, "g");
  check_dtype(beta, "beta");
  if (has_state) check_dtype(*initial_state, "initial_state");
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type()) {
    throw std::invalid_argument(
        "gated_delta_rule: q, k and v have dtypes " + std::string(c10::toString(q.scalar_type())) +
        ", " + c10::toString(k.scalar_type()) + ", " + c10::toString(v.scalar_type()) +
        ", expected one dtype for all three");
  }
  const at::Device device = q.device();
  check_device(k, "k", device);
  check_device(v, "v", device);
  check_device(g, "g", device);
  check_device(beta, "beta", device);
  if (has_state) check_device(*initial_state, "initial_state", device);
  return offsets;
}

std::array<std::atomic<int64_t>, 4> backend_runs{};

}  // namespace

int64_t detail::gdn_backend_runs(GdnBackend backend) {
  return backend_runs.at(static_cast<size_t>(backend)).load();
}

GatedDeltaRuleOutput gated_delta_rule(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& g, const at::Tensor& beta,
                                      const std::optional<at::Tensor>& initial_state, double scale,
                                      const OpsOptions& ops,
                                      const std::optional<at::Tensor>& cu_seqlens) {
  const std::vector<int64_t> offsets = validate(q, k, v, g, beta, initial_state, cu_seqlens);
  // Packed sequences count as the batch of N sequences they are.
  const int64_t sequences = offsets.empty() ? q.size(0) : int64_t(offsets.size()) - 1;
  GdnProblem problem{sequences,       v.size(2),   q.size(3),       v.size(3),
                     q.scalar_type(), q.is_cuda(), !offsets.empty()};
  if constexpr (kCudaKernelsBuilt) {
    if (problem.on_cuda) {
      bool needs_backward = false;
      if (at::GradMode::is_enabled()) {
        for (const at::Tensor* t : {&q, &k, &v, &g, &beta}) needs_backward |= t->requires_grad();
        needs_backward |=
            initial_state.has_value() && initial_state->defined() && initial_state->requires_grad();
      }
      set_gdn_kernel_demand(problem, needs_backward, ops, q.device().index());
    }
  }
  const GdnBackendChoice choice = choose_gdn_backend(ops.gdn_backend, problem, kCudaKernelsBuilt);
  if (!choice.fallback_reason.empty()) log_gdn_fallback_once(problem, choice.fallback_reason);
  backend_runs.at(static_cast<size_t>(choice.backend)).fetch_add(1);
  // The op chooses its own precision (fp32 state and accumulation): autocast must not recast the
  // matmuls inside it (the chunked form writes into fp32 buffers with out= variants).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  if (!(scale > 0.0)) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const bool has_state = initial_state.has_value() && initial_state->defined();

  if constexpr (kCudaKernelsBuilt) {
    if (choice.backend == GdnBackend::kCuda) {
      return gated_delta_rule_cuda(q, k, v, g, beta, initial_state, scale, ops, offsets);
    }
  }

  // fp32 arithmetic for fp32/bf16/half inputs: the chunked form's inverse and the state are not
  // safe in 16-bit types. The casts are autograd ops, so gradients return in each input's dtype.
  const at::ScalarType compute = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // Grouped value heads: the ATen backends read each q, k head once per value head of its group
  // (repeat_interleave is differentiable: its backward sums each group's gradients).
  const int64_t group = v.size(2) / q.size(2);
  auto per_value_head = [&](const at::Tensor& x) {
    return group == 1 ? x : x.repeat_interleave(group, 2);
  };
  const at::Tensor qc = per_value_head(q.to(compute)), kc = per_value_head(k.to(compute));
  const at::Tensor vc = v.to(compute);
  const at::Tensor gc = g.to(compute), bc = beta.to(compute);
  const at::Tensor h0 = has_state ? initial_state->to(compute) : at::Tensor();

  GatedDeltaRuleOutput out;
  if (choice.backend == GdnBackend::kReference) {
    out = detail::gated_delta_rule_reference(qc, kc, vc, gc, bc, h0, scale, offsets);
  } else {
    out = detail::gated_delta_rule_chunked(qc, kc, vc, gc, bc, h0, scale, kGdnChunk, offsets);
  }
  out.o = out.o.to(v.scalar_type());
  return out;
}

}  // namespace hypnos::ops
