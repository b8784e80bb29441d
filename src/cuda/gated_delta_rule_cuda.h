// LibTorch side of the CUDA gated delta rule: workspaces on the current stream, the autograd
// function, and the two passes exposed for tests and the benchmark. The inputs were validated by
// the public op (ops/gated_delta_rule.h), which also decided that the kernels take them
// (ops/gdn_backend_choice.h); the kernels' launchers still refuse bad sizes with a status.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "hypnos/ops/gated_delta_rule.h"
#include "ops/gdn_backend_choice.h"

namespace hypnos::ops {

/// The differentiable CUDA op (GdnBackend::kCuda) on inputs gated_delta_rule validated and
/// choose_gdn_backend accepted: q, k: [B, T, Hqk, K]; v: [B, T, H, V] (H a multiple of Hqk:
/// grouped value heads), bf16 or fp32 (strided inputs are copied), (K, V) a pair the kernels are
/// built for; g, beta: [B, T, H] (any floating dtype; computed in fp32); initial_state:
/// [B, H, K, V]. scale <= 0 means K^-0.5. ops.gdn_kernel and
/// ops.gdn_scan_slice choose the kernels (the backward runs the forward's). cu_seqlens: the op's
/// validated host offsets [0, ..., T] of N packed sequences (B = 1; states [N, H, K, V]), or
/// empty. Throws naming the kernel when a launch fails.
GatedDeltaRuleOutput gated_delta_rule_cuda(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& g,
                                           const at::Tensor& beta,
                                           const std::optional<at::Tensor>& initial_state,
                                           double scale, const OpsOptions& ops = {},
                                           const std::vector<int64_t>& cu_seqlens = {});

/// Packed sequences as the kernels take them (kernels/gdn.h, GdnParams::cu_seqlens and
/// chunk_offsets): one int64 tensor on the inputs' device holding the N + 1 token offsets, then
/// the N + 1 chunk offsets, and the sizes the host needs. Default: not packed (B rows of T tokens).
struct GdnPacking {
  at::Tensor offsets;     ///< [2 (N + 1)] int64
  int64_t sequences = 0;  ///< N
  int64_t longest = 0;    ///< the longest sequence's tokens
  int64_t chunks = 0;     ///< the chunks of all sequences (each ceil(length / C))
  bool packed() const { return sequences > 0; }
};

/// The packing of validated host offsets [0, ..., T] (strictly increasing) for tensors on
/// `device`; not packed for empty offsets. One host-to-device copy.
GdnPacking gdn_packing(const std::vector<int64_t>& cu_seqlens, const at::Device& device);

/// The most dynamic shared memory per block the kernels that ops.gdn_kernel and ops.gdn_scan_slice
/// select ask for at the problem's sizes and dtype (the forward's, and the backward's too when
/// needs_backward), or 0 when they are not built for its head dims. Host code: no device needed.
int64_t gdn_kernel_smem_bytes(const GdnProblem& problem, bool needs_backward,
                              const OpsOptions& ops);

/// Sets problem.kernel_smem_bytes (gdn_kernel_smem_bytes) and problem.device_smem_bytes (the opt-in
/// limit per block of CUDA device `device`), for choose_gdn_backend.
void set_gdn_kernel_demand(GdnProblem& problem, bool needs_backward, const OpsOptions& ops,
                           c10::DeviceIndex device);

/// Whether outputs are filled with NaN before the kernels run, so a test can prove every element is
/// written.
enum class GdnOutputInit { kUninitialized, kNaN };

/// What the forward keeps for the backward (see kernels/gdn.h): g_cum fp32; the others bf16 for
/// bf16 inputs on the tensor-core kernels (GdnParams::bf16_workspaces), fp32 otherwise. The
/// backward must run the same ops.gdn_kernel as the forward (it checks the workspaces' dtype).
/// Packed sequences: the chunk-major [B, H, NC] dims are one, H * GdnPacking::chunks.
struct GdnCudaSaved {
  at::Tensor g_cum;         // [B, H, NC, C]
  at::Tensor w;             // [B, H, NC, C, K]
  at::Tensor attn;          // [B, H, NC, C, C]
  at::Tensor a_inv;         // [B, H, NC, C, C]; with u and chunk_states, only for a backward
  at::Tensor u;             // [B, H, NC, C, V]
  at::Tensor chunk_states;  // [B, H, NC, K, V]
};

struct GdnCudaForward {
  at::Tensor o;            // [B, T, H, V], dtype of v
  at::Tensor final_state;  // [B or N, H, K, V] fp32
  GdnCudaSaved saved;      // undefined tensors unless save_for_backward
};

struct GdnCudaGrads {
  at::Tensor q, k, v;        // dtype of q
  at::Tensor g, beta;        // fp32
  at::Tensor initial_state;  // fp32, undefined when there was no initial state
};

/// One forward pass on already validated inputs (q, k, v contiguous, same dtype; g, beta fp32
/// contiguous; initial_state fp32 contiguous or undefined; scale > 0), packed or not.
GdnCudaForward gated_delta_rule_cuda_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, const at::Tensor& initial_state, double scale, bool save_for_backward,
    GdnOutputInit init = GdnOutputInit::kUninitialized, const OpsOptions& ops = {},
    const GdnPacking& packing = {});

/// One backward pass from the forward's saved workspaces (and its packing); grad_final_state may
/// be undefined.
GdnCudaGrads gated_delta_rule_cuda_backward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& beta,
    bool has_initial_state, double scale, const GdnCudaSaved& saved, const at::Tensor& grad_o,
    const at::Tensor& grad_final_state, GdnOutputInit init = GdnOutputInit::kUninitialized,
    const OpsOptions& ops = {}, const GdnPacking& packing = {});

}  // namespace hypnos::ops
