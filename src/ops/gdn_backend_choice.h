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

/// What the choice looks at: q's and v's sizes, q's dtype (= k's and v's) and device kind, and
/// whether the sequences are packed (cu_seqlens).
struct GdnProblem {
  int64_t batch = 0, heads = 0, head_dim_k = 0, head_dim_v = 0;
  c10::ScalarType dtype = c10::ScalarType::Float;
  bool on_cuda = false;
  bool packed = false;
};

/// "B = 2, H = 4, K = 96, V = 256, BFloat16 on CUDA" (", packed (cu_seqlens)" when packed): the
/// problem as error and log messages name it.
std::string describe(const GdnProblem& problem);

/// Why the CUDA kernels do not take `problem` ("" when they do): a CPU tensor, kernels not built,
/// packed sequences (the kernels take no cu_seqlens yet), K != V or not in {64, 128}, B * H over
/// the grid's 65535, a dtype other than bf16 / fp32.
std::string cuda_kernels_refuse(const GdnProblem& problem, bool cuda_kernels_built);

struct GdnBackendChoice {
  GdnBackend backend = GdnBackend::kChunked;  ///< never kAuto
  /// Set when auto fell back to chunked on a CUDA device: why the kernels did not take it.
  std::string fallback_reason;
};

/// Resolves `requested`: kAuto is kCuda where the kernels take the problem, else kChunked (with a
/// fallback_reason on a CUDA device: packed sequences on a GPU run the chunked backend in one
/// pass); kCuda on a problem they do not take, packed sequences included, throws
/// std::invalid_argument naming the problem and what the kernels take; kReference and kChunked are
/// returned as they are.
GdnBackendChoice choose_gdn_backend(GdnBackend requested, const GdnProblem& problem,
                                    bool cuda_kernels_built);

/// Logs "gated_delta_rule: ... runs the chunked ATen backend ..." (log.h, warn) the first time a
/// problem falls back, and nothing for a problem seen before: one line per shape, not per call.
/// Returns whether it logged. Thread-safe.
bool log_gdn_fallback_once(const GdnProblem& problem, std::string_view reason);

}  // namespace hypnos::ops
