// Entry point of the gated delta rule: validates the arguments once, casts to the compute dtype
// (fp32, or double for double inputs) and hands over to the chosen backend.
#include "hypnos/ops/gated_delta_rule.h"

#include "ops/gated_delta_rule_backends.h"

#ifdef HYPNOS_WITH_CUDA
#include "ops/gated_delta_rule_cuda.h"
#endif

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

void validate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
              const at::Tensor& beta, const std::optional<at::Tensor>& initial_state) {
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
  if (v.dim() != 4 || v.size(0) != B || v.size(1) != T || v.size(2) != H || v.size(3) == 0) {
    throw std::invalid_argument("gated_delta_rule: v has shape " + shape_str(v.sizes()) +
                                ", expected [" + std::to_string(B) + ", " + std::to_string(T) +
                                ", " + std::to_string(H) + ", V] ([B, T, H] of q, V >= 1)");
  }
  const int64_t V = v.size(3);
  check_shape(g, "g", {B, T, H}, "[B, T, H]");
  check_shape(beta, "beta", {B, T, H}, "[B, T, H]");
  const bool has_state = initial_state.has_value() && initial_state->defined();
  if (has_state) check_shape(*initial_state, "initial_state", {B, H, K, V}, "[B, H, K, V]");

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
}

}  // namespace

GatedDeltaRuleOutput gated_delta_rule(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& g, const at::Tensor& beta,
                                      const std::optional<at::Tensor>& initial_state, double scale,
                                      GdnBackend backend) {
  validate(q, k, v, g, beta, initial_state);
  // The op chooses its own precision (fp32 state and accumulation): autocast must not recast the
  // matmuls inside it (the chunked form writes into fp32 buffers with out= variants).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  if (!(scale > 0.0)) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const bool has_state = initial_state.has_value() && initial_state->defined();

  if (backend == GdnBackend::kAuto) {
#ifdef HYPNOS_WITH_CUDA
    // The kernels cover K = V in {64, 128} in bf16/fp32; anything else (double, other head sizes)
    // takes the chunked ATen path on the same device rather than failing.
    const auto dt = v.scalar_type();
    const bool kernel_shape = q.size(3) == v.size(3) && (q.size(3) == 64 || q.size(3) == 128) &&
                              q.size(0) * q.size(2) <= 65535;  // B*H: the kernels' grid.y
    const bool kernel_dtype = dt == at::kFloat || dt == at::kBFloat16;
    backend = q.is_cuda() && kernel_shape && kernel_dtype && q.scalar_type() == dt
                  ? GdnBackend::kCuda
                  : GdnBackend::kChunked;
#else
    backend = GdnBackend::kChunked;
#endif
  }
  if (backend == GdnBackend::kCuda) {
#ifdef HYPNOS_WITH_CUDA
    if (!q.is_cuda()) {
      throw std::invalid_argument("gated_delta_rule: backend cuda needs CUDA tensors, got q on " +
                                  q.device().str() + " (use chunked or reference on the CPU)");
    }
    return gated_delta_rule_cuda(q, k, v, g, beta, initial_state, scale);
#else
    throw std::invalid_argument(
        "gated_delta_rule: backend cuda requested but hypnos was built without its CUDA kernels "
        "(configure with HYPNOS_CUDA=ON on a machine with nvcc, or use chunked or reference)");
#endif
  }

  // fp32 arithmetic for fp32/bf16/half inputs: the chunked form's inverse and the state are not
  // safe in 16-bit types. The casts are autograd ops, so gradients return in each input's dtype.
  const at::ScalarType compute = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor qc = q.to(compute), kc = k.to(compute), vc = v.to(compute);
  const at::Tensor gc = g.to(compute), bc = beta.to(compute);
  const at::Tensor h0 = has_state ? initial_state->to(compute) : at::Tensor();

  GatedDeltaRuleOutput out;
  if (backend == GdnBackend::kReference) {
    out = detail::gated_delta_rule_reference(qc, kc, vc, gc, bc, h0, scale);
  } else {
    out = detail::gated_delta_rule_chunked(qc, kc, vc, gc, bc, h0, scale, kGdnChunk);
  }
  out.o = out.o.to(v.scalar_type());
  return out;
}

}  // namespace hypnos::ops
