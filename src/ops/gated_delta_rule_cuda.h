// LibTorch side of the CUDA gated delta rule: validation, workspaces on the current stream, the
// autograd function, and the two passes exposed for tests and the benchmark.
#pragma once
#include <ATen/ATen.h>

#include <optional>

#include "hypnos/ops/gated_delta_rule.h"

namespace hypnos::ops {

/// The differentiable CUDA op (GdnBackend::kCuda). q, k: [B, T, H, K]; v: [B, T, H, V], bf16 or
/// fp32 (strided inputs are copied), K = V in {64, 128}; g, beta: [B, T, H] (any floating dtype;
/// computed in fp32); initial_state: [B, H, K, V]. scale <= 0 means K^-0.5. Throws naming the
/// argument on bad input and naming the kernel when a launch fails.
GatedDeltaRuleOutput gated_delta_rule_cuda(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& g,
                                           const at::Tensor& beta,
                                           const std::optional<at::Tensor>& initial_state,
                                           double scale);

/// Whether outputs are filled with NaN before the kernels run, so a test can prove every element is
/// written.
enum class GdnOutputInit { kUninitialized, kNaN };

/// Which kernels run (kernels::GdnKernel): tensor cores (bf16 inputs; fp32 inputs always take the
/// fp32 kernels) or the first fp32 CUDA-core version, kept as the fallback.
enum class GdnCudaKernel { kTensorCore, kFp32 };

/// The kernel named by the environment variable HYPNOS_GDN_KERNEL: unset, empty or "tc" gives
/// kTensorCore, "fp32" gives kFp32; anything else throws std::invalid_argument naming the value.
GdnCudaKernel gdn_cuda_kernel_from_env();

/// The scans' state columns per CTA named by HYPNOS_GDN_SCAN_SLICE (kernels::GdnParams::
/// scan_slice): unset or empty gives 0 (the kernels' choice: 64, or 32 under 128 CTAs), "32", "64"
/// or "128" forces that width; anything else throws std::invalid_argument naming the value. For
/// benchmarks and tests.
int gdn_scan_slice_from_env();

/// What the forward keeps for the backward (see kernels/gdn.h): g_cum fp32; the others bf16 for
/// bf16 inputs on the tensor-core kernels (GdnParams::bf16_workspaces), fp32 otherwise.
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
  at::Tensor final_state;  // [B, H, K, V] fp32
  GdnCudaSaved saved;      // undefined tensors unless save_for_backward
};

struct GdnCudaGrads {
  at::Tensor q, k, v;        // dtype of q
  at::Tensor g, beta;        // fp32
  at::Tensor initial_state;  // fp32, undefined when there was no initial state
};

/// One forward pass on already validated inputs (q, k, v contiguous, same dtype; g, beta fp32
/// contiguous; initial_state fp32 contiguous or undefined; scale > 0).
GdnCudaForward gated_delta_rule_cuda_forward(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             const at::Tensor& beta,
                                             const at::Tensor& initial_state, double scale,
                                             bool save_for_backward,
                                             GdnOutputInit init = GdnOutputInit::kUninitialized,
                                             GdnCudaKernel kernel = gdn_cuda_kernel_from_env());

/// One backward pass from the forward's saved workspaces; grad_final_state may be undefined.
GdnCudaGrads gated_delta_rule_cuda_backward(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const at::Tensor& beta,
                                            bool has_initial_state, double scale,
                                            const GdnCudaSaved& saved, const at::Tensor& grad_o,
                                            const at::Tensor& grad_final_state,
                                            GdnOutputInit init = GdnOutputInit::kUninitialized,
                                            GdnCudaKernel kernel = gdn_cuda_kernel_from_env());

}  // namespace hypnos::ops
