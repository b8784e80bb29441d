// The CUDA gated delta rule as a torch::autograd::Function: allocates the fp32 workspaces with
// ATen on the current stream, calls the framework-free launchers of kernels/gdn.h and turns a bad
// status into an exception naming the kernel. The public op validated the inputs and chose this
// backend (ops/gated_delta_rule.cpp); nothing is checked twice here.
#include "cuda/gated_delta_rule_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cuda/kernel_status.h"
#include "gdn.h"

namespace hypnos::ops {
namespace {

using kernels::GdnDtype;
using kernels::GdnParams;

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("gated_delta_rule_cuda: " + what);
}

/// The kernels load rows of q, k, v and dO in 16-byte pieces.
bool rows_aligned(const at::Tensor& t) {
  return t.is_contiguous() && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

/// t itself when its rows can be read as they are, else a contiguous copy (a fresh allocation,
/// aligned): also for a contiguous view that starts inside another tensor's storage.
at::Tensor aligned_rows(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return rows_aligned(c) ? c : c.clone(at::MemoryFormat::Contiguous);
}

void require_aligned_rows(std::initializer_list<std::pair<const char*, const at::Tensor*>> ts) {
  for (const auto& [name, t] : ts) {
    if (!rows_aligned(*t)) {
      fail(std::string(name) +
           " must be contiguous and start on a 16-byte boundary (gated_delta_rule_cuda copies "
           "such inputs; this entry point does not)");
    }
  }
}

at::Tensor make_output(at::IntArrayRef sizes, const at::TensorOptions& options,
                       GdnOutputInit init) {
  return init == GdnOutputInit::kNaN
             ? at::full(sizes, std::numeric_limits<float>::quiet_NaN(), options)
             : at::empty(sizes, options);
}

// kernels/ stays framework-free and cannot include the ops headers, so it has its own plain enums
// and an int for the scan width: this is the one place that converts OpsOptions into them.
void set_kernel_choice(GdnParams& p, const OpsOptions& ops) {
  p.kernel = ops.gdn_kernel == GdnKernel::kFp32 ? kernels::GdnKernel::kFp32
                                                : kernels::GdnKernel::kTensorCore;
  switch (ops.gdn_scan_slice) {
    case GdnScanSlice::kAuto:
      p.scan_slice = 0;
      break;
    case GdnScanSlice::k32:
      p.scan_slice = 32;
      break;
    case GdnScanSlice::k64:
      p.scan_slice = 64;
      break;
    case GdnScanSlice::k128:
      p.scan_slice = 128;
      break;
  }
  switch (ops.gdn_forward_output) {
    case GdnForwardOutput::kAuto:
      p.forward_output = kernels::GdnForwardOutput::kAuto;
      break;
    case GdnForwardOutput::kScan:
      p.forward_output = kernels::GdnForwardOutput::kInScan;
      break;
    case GdnForwardOutput::kSeparate:
      p.forward_output = kernels::GdnForwardOutput::kSeparate;
      break;
  }
}

/// B, T, H (v's heads), K, V from the tensors, and q's heads where fewer (grouped value heads);
/// packed sequences (B = 1) replace B and T with the sequences and the longest one, and point the
/// kernels at the offsets.
GdnParams base_params(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const at::Tensor& beta, double scale, const OpsOptions& ops,
                      const GdnPacking& packing) {
  GdnParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.beta = beta.data_ptr<float>();
  p.batch = q.size(0);
  p.seq_len = q.size(1);
  p.heads = v.size(2);
  p.heads_qk = q.size(2) == v.size(2) ? 0 : q.size(2);
  p.head_dim_k = int(q.size(3));
  p.head_dim_v = int(v.size(3));
  p.scale = float(scale);
  p.dtype = q.scalar_type() == at::kBFloat16 ? GdnDtype::kBFloat16 : GdnDtype::kFloat32;
  set_kernel_choice(p, ops);
  if (packing.packed()) {
    p.cu_seqlens = packing.offsets.data_ptr<int64_t>();
    p.chunk_offsets = p.cu_seqlens + packing.sequences + 1;
    p.batch = packing.sequences;
    p.seq_len = packing.longest;
  }
  return p;
}

/// Sizes of a chunk-major workspace with `tail` per chunk: [B, H, NC, tail...], or
/// [H * chunks, tail...] for packed sequences.
std::vector<int64_t> chunk_major(const GdnParams& p, const GdnPacking& packing,
                                 std::initializer_list<int64_t> tail) {
  std::vector<int64_t> sizes;
  if (packing.packed()) {
    sizes = {p.heads * packing.chunks};
  } else {
    sizes = {p.batch, p.heads, p.n_chunks()};
  }
  sizes.insert(sizes.end(), tail);
  return sizes;
}

/// The packing as the autograd function saves it (nothing when not packed), and back.
void save_packing(torch::autograd::AutogradContext* ctx, const GdnPacking& packing) {
  if (!packing.packed()) return;
  ctx->saved_data["packing_offsets"] = packing.offsets;
  ctx->saved_data["packing_sizes"] =
      std::vector<int64_t>{packing.sequences, packing.longest, packing.chunks};
}

GdnPacking saved_packing(torch::autograd::AutogradContext* ctx) {
  GdnPacking packing;
  if (ctx->saved_data.find("packing_offsets") == ctx->saved_data.end()) return packing;
  packing.offsets = ctx->saved_data["packing_offsets"].toTensor();
  const std::vector<int64_t> sizes = ctx->saved_data["packing_sizes"].toIntVector();
  packing.sequences = sizes.at(0);
  packing.longest = sizes.at(1);
  packing.chunks = sizes.at(2);
  return packing;
}

class GatedDeltaRuleCudaFunction : public torch::autograd::Function<GatedDeltaRuleCudaFunction> {
 public:
  // initial_state is an optional (not an undefined tensor): autograd skips a nullopt input.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, const at::Tensor& g,
                                                const at::Tensor& beta,
                                                const std::optional<at::Tensor>& initial_state,
                                                double scale, const OpsOptions& ops,
                                                const GdnPacking& packing) {
    // The kernel choice is saved (as ints: saved_data holds IValues) so that the backward runs
    // the kernels whose workspaces the forward wrote.
    const bool has_h0 = initial_state.has_value() && initial_state->defined();
    const at::Tensor g32 = g.to(at::kFloat).contiguous();
    const at::Tensor beta32 = beta.to(at::kFloat).contiguous();
    const at::Tensor h0 = has_h0 ? initial_state->to(at::kFloat).contiguous() : at::Tensor();
    GdnCudaForward fwd =
        gated_delta_rule_cuda_forward(q, k, v, g32, beta32, h0, scale, /*save_for_backward=*/true,
                                      GdnOutputInit::kUninitialized, ops, packing);
    const GdnCudaSaved& s = fwd.saved;
    ctx->save_for_backward({q, k, v, beta32, s.g_cum, s.w, s.attn, s.a_inv, s.u, s.chunk_states});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["gdn_kernel"] = static_cast<int64_t>(ops.gdn_kernel);
    ctx->saved_data["gdn_scan_slice"] = static_cast<int64_t>(ops.gdn_scan_slice);
    save_packing(ctx, packing);
    ctx->saved_data["has_h0"] = has_h0;
    ctx->saved_data["g_dtype"] = g.scalar_type();
    ctx->saved_data["beta_dtype"] = beta.scalar_type();
    ctx->saved_data["h0_dtype"] = has_h0 ? initial_state->scalar_type() : at::ScalarType::Float;
    return {fwd.o, fwd.final_state};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &beta32 = saved[3];
    const GdnCudaSaved ws{saved[4], saved[5], saved[6], saved[7], saved[8], saved[9]};
    const bool has_h0 = ctx->saved_data["has_h0"].toBool();
    at::Tensor grad_o = grads[0].defined() ? aligned_rows(grads[0].to(q.scalar_type()))
                                           : at::zeros(v.sizes(), v.options());
    at::Tensor grad_final =
        grads[1].defined() ? grads[1].to(at::kFloat).contiguous() : at::Tensor();
    OpsOptions ops;
    ops.gdn_kernel = static_cast<GdnKernel>(ctx->saved_data["gdn_kernel"].toInt());
    ops.gdn_scan_slice = static_cast<GdnScanSlice>(ctx->saved_data["gdn_scan_slice"].toInt());
    GdnCudaGrads gr = gated_delta_rule_cuda_backward(
        q, k, v, beta32, has_h0, ctx->saved_data["scale"].toDouble(), ws, grad_o, grad_final,
        GdnOutputInit::kUninitialized, ops, saved_packing(ctx));
    return {gr.q,
            gr.k,
            gr.v,
            gr.g.to(ctx->saved_data["g_dtype"].toScalarType()),
            gr.beta.to(ctx->saved_data["beta_dtype"].toScalarType()),
            has_h0 ? gr.initial_state.to(ctx->saved_data["h0_dtype"].toScalarType()) : at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

GdnPacking gdn_packing(const std::vector<int64_t>& cu_seqlens, const at::Device& device) {
  GdnPacking packing;
  if (cu_seqlens.empty()) return packing;
  const auto n = static_cast<int64_t>(cu_seqlens.size());
  std::vector<int64_t> offsets(cu_seqlens);  // the token offsets, then the chunk offsets
  offsets.push_back(0);
  for (int64_t i = 0; i + 1 < n; ++i) {
    const int64_t length = cu_seqlens[i + 1] - cu_seqlens[i];
    packing.longest = std::max(packing.longest, length);
    offsets.push_back(offsets.back() + (length + kernels::kGdnChunk - 1) / kernels::kGdnChunk);
  }
  packing.sequences = n - 1;
  packing.chunks = offsets.back();
  packing.offsets = at::tensor(offsets, at::TensorOptions().dtype(at::kLong)).to(device);
  return packing;
}

int64_t gdn_kernel_smem_bytes(const GdnProblem& problem, bool needs_backward,
                              const OpsOptions& ops) {
  GdnParams p;
  p.batch = problem.batch;
  p.seq_len = 1;  // the kernels' shared memory does not depend on T
  p.heads = problem.heads;
  p.head_dim_k = int(problem.head_dim_k);
  p.head_dim_v = int(problem.head_dim_v);
  p.dtype = problem.dtype == at::kBFloat16 ? GdnDtype::kBFloat16 : GdnDtype::kFloat32;
  set_kernel_choice(p, ops);
  const size_t forward = kernels::gdn_chunk_fwd_smem_bytes(p);
  const size_t backward = needs_backward ? kernels::gdn_chunk_bwd_smem_bytes(p) : forward;
  return forward == 0 || backward == 0 ? 0 : int64_t(std::max(forward, backward));
}

void set_gdn_kernel_demand(GdnProblem& problem, bool needs_backward, const OpsOptions& ops,
                           c10::DeviceIndex device) {
  problem.kernel_smem_bytes = gdn_kernel_smem_bytes(problem, needs_backward, ops);
  problem.device_smem_bytes =
      int64_t(at::cuda::getDeviceProperties(device)->sharedMemPerBlockOptin);
}

GdnCudaForward gated_delta_rule_cuda_forward(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             const at::Tensor& beta,
                                             const at::Tensor& initial_state, double scale,
                                             bool save_for_backward, GdnOutputInit init,
                                             const OpsOptions& ops, const GdnPacking& packing) {
  require_aligned_rows({{"q", &q}, {"k", &k}, {"v", &v}});
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t H = v.size(2), K = q.size(3), V = v.size(3), C = kernels::kGdnChunk;
  GdnParams p = base_params(q, k, v, beta, scale, ops, packing);
  const int64_t N = p.batch;  // sequences: B, or the packed ones
  const auto f32 = q.options().dtype(at::kFloat);
  const auto typed = q.options().dtype(p.bf16_workspaces() ? at::kBFloat16 : at::kFloat);
  GdnCudaForward out;
  out.o = make_output(v.sizes(), v.options(), init);
  out.final_state = make_output({N, H, K, V}, f32, init);
  GdnCudaSaved& s = out.saved;
  s.g_cum = at::empty(chunk_major(p, packing, {C}), f32);
  s.w = at::empty(chunk_major(p, packing, {C, K}), typed);
  s.attn = at::empty(chunk_major(p, packing, {C, C}), typed);
  const at::Tensor u_tilde = at::empty(chunk_major(p, packing, {C, V}), typed);
  if (save_for_backward) s.a_inv = at::empty(chunk_major(p, packing, {C, C}), typed);
  // U and the chunk states: saved for the backward, and what the separate output kernel reads.
  at::Tensor u, chunk_states;
  if (save_for_backward || p.separate_output()) {
    u = at::empty(chunk_major(p, packing, {C, V}), typed);
    chunk_states = at::empty(chunk_major(p, packing, {K, V}), typed);
  }
  if (save_for_backward) {
    s.u = u;
    s.chunk_states = chunk_states;
  }
  p.g = g.data_ptr<float>();
  p.initial_state = initial_state.defined() ? initial_state.data_ptr<float>() : nullptr;
  p.o = out.o.data_ptr();
  p.final_state = out.final_state.data_ptr<float>();
  p.g_cum = s.g_cum.data_ptr<float>();
  p.w = s.w.data_ptr();
  p.u_tilde = u_tilde.data_ptr();
  p.attn = s.attn.data_ptr();
  p.a_inv = save_for_backward ? s.a_inv.data_ptr() : nullptr;
  p.u = u.defined() ? u.data_ptr() : nullptr;
  p.chunk_states = chunk_states.defined() ? chunk_states.data_ptr() : nullptr;
  throw_on_kernel_error(kernels::gdn_chunk_fwd(p, at::cuda::getCurrentCUDAStream()),
                        "gated_delta_rule_cuda",
                        "gdn_chunk_fwd (gdn_chunk_prep_kernel, gdn_chunk_fwd_scan_tc_kernel, "
                        "gdn_chunk_output_tc_kernel or gdn_chunk_fwd_kernel)");
  return out;
}

GdnCudaGrads gated_delta_rule_cuda_backward(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const at::Tensor& beta,
                                            bool has_initial_state, double scale,
                                            const GdnCudaSaved& saved, const at::Tensor& grad_o,
                                            const at::Tensor& grad_final_state, GdnOutputInit init,
                                            const OpsOptions& ops, const GdnPacking& packing) {
  require_aligned_rows({{"q", &q}, {"k", &k}, {"v", &v}, {"grad_o", &grad_o}});
  const c10::cuda::CUDAGuard guard(q.device());
  GdnParams p = base_params(q, k, v, beta, scale, ops, packing);
  const int64_t N = p.batch, H = v.size(2), K = q.size(3), V = v.size(3);
  const auto f32 = q.options().dtype(at::kFloat);
  GdnCudaGrads gr;
  // dq, dk per value head, as the kernels write them ([B, T, H, K]); summed over each group of
  // value heads below when q and k have fewer heads.
  const std::vector<int64_t> per_value_head{q.size(0), q.size(1), H, K};
  gr.q = make_output(per_value_head, q.options(), init);
  gr.k = make_output(per_value_head, k.options(), init);
  gr.v = make_output(v.sizes(), v.options(), init);
  gr.g = make_output(beta.sizes(), f32, init);
  gr.beta = make_output(beta.sizes(), f32, init);
  if (has_initial_state) gr.initial_state = make_output({N, H, K, V}, f32, init);
  const at::Tensor grad_u = at::empty_like(saved.u);
  const at::Tensor grad_states = at::empty_like(saved.chunk_states);
  const at::ScalarType typed = p.bf16_workspaces() ? at::kBFloat16 : at::kFloat;
  for (const at::Tensor* t : {&saved.w, &saved.attn, &saved.a_inv, &saved.u, &saved.chunk_states}) {
    if (t->scalar_type() != typed) {
      throw std::invalid_argument(
          std::string("gated_delta_rule_cuda: the forward saved its workspaces as ") +
          c10::toString(t->scalar_type()) + " but the backward's kernels (gdn_kernel " +
          (ops.gdn_kernel == GdnKernel::kFp32 ? "fp32" : "tc") + ") need " + c10::toString(typed) +
          ": the backward must run the forward's gdn_kernel");
    }
  }
  p.g_cum = saved.g_cum.data_ptr<float>();
  p.w = saved.w.data_ptr();
  p.attn = saved.attn.data_ptr();
  p.a_inv = saved.a_inv.data_ptr();
  p.u = saved.u.data_ptr();
  p.chunk_states = saved.chunk_states.data_ptr();
  p.grad_o = grad_o.data_ptr();
  p.grad_final_state = grad_final_state.defined() ? grad_final_state.data_ptr<float>() : nullptr;
  p.grad_q = gr.q.data_ptr();
  p.grad_k = gr.k.data_ptr();
  p.grad_v = gr.v.data_ptr();
  p.grad_g = gr.g.data_ptr<float>();
  p.grad_beta = gr.beta.data_ptr<float>();
  p.grad_initial_state = has_initial_state ? gr.initial_state.data_ptr<float>() : nullptr;
  p.grad_u = grad_u.data_ptr();
  p.grad_chunk_states = grad_states.data_ptr();
  throw_on_kernel_error(kernels::gdn_chunk_bwd(p, at::cuda::getCurrentCUDAStream()),
                        "gated_delta_rule_cuda",
                        "gdn_chunk_bwd (the reverse scan and chunk kernels)");
  if (p.heads_qk != 0) {
    const int64_t group = H / p.heads_qk;
    gr.q = gr.q.view({q.size(0), q.size(1), p.heads_qk, group, K}).sum(3);
    gr.k = gr.k.view({q.size(0), q.size(1), p.heads_qk, group, K}).sum(3);
  }
  return gr;
}

GatedDeltaRuleOutput gated_delta_rule_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                           const at::Tensor& v_in, const at::Tensor& g,
                                           const at::Tensor& beta,
                                           const std::optional<at::Tensor>& initial_state,
                                           double scale, const OpsOptions& ops,
                                           const std::vector<int64_t>& cu_seqlens) {
  if (scale <= 0) scale = 1.0 / std::sqrt(double(q_in.size(3)));
  const GdnPacking packing = gdn_packing(cu_seqlens, q_in.device());
  // The kernels read [B, T, H, D] rows, in 16-byte pieces: a strided view or a contiguous one that
  // starts off a 16-byte boundary is copied here (an autograd op) rather than refused, so the
  // dispatcher can pass slices.
  const at::Tensor q = aligned_rows(q_in), k = aligned_rows(k_in), v = aligned_rows(v_in);
  const at::Tensor h0 = initial_state ? *initial_state : at::Tensor();
  bool needs_grad = false;
  for (const at::Tensor* t : {&q, &k, &v, &g, &beta, &h0}) {
    needs_grad = needs_grad || (t->defined() && t->requires_grad());
  }
  if (!needs_grad || !at::GradMode::is_enabled()) {
    GdnCudaForward fwd = gated_delta_rule_cuda_forward(
        q, k, v, g.to(at::kFloat).contiguous(), beta.to(at::kFloat).contiguous(),
        h0.defined() ? h0.to(at::kFloat).contiguous() : at::Tensor(), scale,
        /*save_for_backward=*/false, GdnOutputInit::kUninitialized, ops, packing);
    return {fwd.o, fwd.final_state};
  }
  auto outs = GatedDeltaRuleCudaFunction::apply(
      q, k, v, g, beta, h0.defined() ? std::optional<at::Tensor>(h0) : std::nullopt, scale, ops,
      packing);
  return {outs[0], outs[1]};
}

}  // namespace hypnos::ops
