// OpsOptions: every implementation choice of hypnos's ops, one validated switch per choice. The
// model holds one (its keys sit beside the architecture in `model.*`: configs/README.md) and hands
// it to each layer, which hands it to the ops; benches and tests build one directly. Nothing reads
// these choices from the environment.
#pragma once
#include <array>
#include <string_view>

#include "hypnos/config/fields.h"

namespace hypnos::ops {

/// Which implementation computes the gated delta rule (ops/gated_delta_rule.h).
enum class GdnBackend {
  kAuto,       ///< kCuda where the kernels take the inputs (CUDA tensors, head dims they are
               ///< built for, shared memory within the device's, bf16 / fp32), else kChunked,
               ///< with one log line per shape that falls back
  kReference,  ///< per-step recurrence: the definition (slow; the oracle)
  kChunked,    ///< WY/UT chunked form in ATen with a hand-derived backward (the CPU path)
  kCuda,       ///< the custom CUDA kernels of kernels/ (docs/delta_rule.md section 5)
};

/// Which CUDA kernels the kCuda backend runs: tensor cores (bf16 inputs; fp32 inputs always take
/// the fp32 kernels) or the first, CUDA-core fp32 version, kept as the known-correct fallback.
enum class GdnKernel { kTensorCore, kFp32 };

/// State columns per CTA of the tensor-core scans: the kernels' own choice (64, or 32 when 64 would
/// give fewer than 128 CTAs) or a forced width (benchmarks and tests compare them).
enum class GdnScanSlice { kAuto, k32, k64, k128 };

/// Where the tensor-core forward computes o: the kernels' own choice (today in the scan), in the
/// state scan's step, or in a chunk-parallel kernel after a scan that carries only the state (half
/// the products on the sequential path: for batches of few long sequences).
enum class GdnForwardOutput { kAuto, kScan, kSeparate };

struct OpsOptions {
  /// Gated delta rule implementation. Default: auto.
  GdnBackend gdn_backend = GdnBackend::kAuto;
  /// The CUDA delta-rule kernels. Default: tc.
  GdnKernel gdn_kernel = GdnKernel::kTensorCore;
  /// The CUDA scans' state columns per CTA. Default: auto.
  GdnScanSlice gdn_scan_slice = GdnScanSlice::kAuto;
  /// Where the CUDA tensor-core forward computes o. Default: auto.
  GdnForwardOutput gdn_forward_output = GdnForwardOutput::kAuto;
  /// The small ops of a layer (short and dynamic convolutions, L2 norms, gates, gated norm, RoPE,
  /// SwiGLU's gate) run as fused CUDA kernels on CUDA tensors; false runs their ATen compositions
  /// everywhere (the A/B switch, and a way around a suspected kernel bug). Default: true.
  bool fused_ops = true;

  template <class V>
  void visit(V& v) {
    v.field("gdn_backend", gdn_backend, "gated delta rule: auto | reference | chunked | cuda");
    v.field("gdn_kernel", gdn_kernel,
            "CUDA delta-rule kernels: tc (tensor cores) | fp32 (CUDA cores, the fallback)");
    v.field("gdn_scan_slice", gdn_scan_slice,
            "state columns per CTA of the CUDA scans: auto | 32 | 64 | 128");
    v.field("gdn_forward_output", gdn_forward_output,
            "where the CUDA tensor-core forward computes o: auto | scan | separate (a "
            "chunk-parallel kernel after a state-only scan)");
    v.field("fused_ops", fused_ops,
            "fused CUDA kernels for a layer's small ops (false: their ATen compositions)");
  }
};

}  // namespace hypnos::ops

template <>
struct hypnos::config::EnumNames<hypnos::ops::GdnBackend> {
  static constexpr std::array<std::string_view, 4> names{"auto", "reference", "chunked", "cuda"};
};

template <>
struct hypnos::config::EnumNames<hypnos::ops::GdnKernel> {
  static constexpr std::array<std::string_view, 2> names{"tc", "fp32"};
};

template <>
struct hypnos::config::EnumNames<hypnos::ops::GdnScanSlice> {
  static constexpr std::array<std::string_view, 4> names{"auto", "32", "64", "128"};
};

template <>
struct hypnos::config::EnumNames<hypnos::ops::GdnForwardOutput> {
  static constexpr std::array<std::string_view, 3> names{"auto", "scan", "separate"};
};
