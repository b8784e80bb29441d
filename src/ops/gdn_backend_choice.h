// Internal: which backend computes a gated-delta-rule call. A pure function of the problem's shape,
// dtype and device kind and of whether the CUDA kernels were built, so that every branch is tested
// on any machine (tests/ops/gdn_backend_test.cpp).
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "hypnos/ops/ops_options.h"

namespace hypnos::ops {

/// What the choice looks at: q's and v's sizes, q's dtype (= k's and v's) and device kind, whether
/// the sequences are packed (cu_seqlens), and what the CUDA kernels would ask of the device.
struct GdnProblem {
  int64_t batch = 0;  ///< B, or the N packed sequences (the kernels' grid has N * H rows)
  int64_t heads = 0;  ///< of v (value heads: q and k may have fewer)
  int64_t head_dim_k = 0, head_dim_v = 0;
  c10::ScalarType dtype = c10::ScalarType::Float;
  bool on_cuda = false;
  bool packed = false;
  /// The most dynamic shared memory one CTA of the kernels the call would run asks for (the
  /// forward's, and the backward's when gradients are needed), as the kernels compute it
  /// (kernels/gdn.h, gdn_chunk_fwd_smem_bytes): 0 when they are not built for these head dims
  /// and this kernel family. And the device's limit per block (the opt-in one). Set by
  /// set_gdn_kernel_demand (cuda/gated_delta_rule_cuda.h) for CUDA tensors where the kernels are
  /// built; not looked at otherwise.
  int64_t kernel_smem_bytes = 0;
  int64_t device_smem_bytes = 0;
};

/// "B = 2, H = 4, K = 96, V = 256, BFloat16 on CUDA" (", packed (cu_seqlens)" when packed, B
/// then being the sequences): the problem as error and log messages name it.
std::string describe(const GdnProblem& problem);

/// Why the CUDA kernels do not take `problem` ("" when they do, packed or not): a CPU tensor,
/// kernels not built, a dtype other than bf16 / fp32, B * H over the grid's 65535, head dims the
/// kernels are not built for (kernel_smem_bytes 0; the one list is kernels/gdn_dispatch.cuh's), or
/// more shared memory per block than the device has.
std::string cuda_kernels_refuse(const GdnProblem& problem, bool cuda_kernels_built);

struct GdnBackendChoice {
  GdnBackend backend = GdnBackend::kChunked;  ///< never kAuto
  /// Set when auto fell back to chunked on a CUDA device: why the kernels did not take it.
  std::string fallback_reason;
};

/// Resolves `requested`: kAuto is kCuda where the kernels take the problem, else kChunked (with a
/// fallback_reason on a CUDA device); kCuda on a problem they do not take throws
/// std::invalid_argument naming the problem and what the kernels take; kReference and kChunked are
/// returned as they are.
GdnBackendChoice choose_gdn_backend(GdnBackend requested, const GdnProblem& problem,
                                    bool cuda_kernels_built);

/// Logs "gated_delta_rule: ... runs the chunked ATen backend ..." (log.h, warn) the first time a
/// problem falls back, and nothing for a problem seen before: one line per shape, not per call.
/// Returns whether it logged. Thread-safe.
bool log_gdn_fallback_once(const GdnProblem& problem, std::string_view reason);

}  // namespace hypnos::ops
