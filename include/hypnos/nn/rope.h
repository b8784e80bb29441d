// Rotary position embedding on interleaved pairs (x[2i], x[2i+1]), as in the reference.
#pragma once
#include <ATen/ATen.h>

#include "hypnos/ops/ops_options.h"

namespace hypnos::nn {

/// How RoPE pairs a head's dimensions: interleaved (x[2i], x[2i+1]), hypnos's own models, or
/// half (x[i], x[i + D/2], "rotate half"), the Hugging Face Qwen2 / Llama convention. Pair i turns
/// by the same angle (offset + t) * base^(-2i/D) in both.
enum class RopeStyle { kInterleaved, kHalf };

/// cos and sin of the angles (offset + t) * base^(-2i/D) for t in [0, T), i in [0, D/2): [T, D/2]
/// each, in fp32 (double for a double `options`), matching the reference's fp32 path. Row t depends
/// on offset + t alone, so rows [a, a + T) of a table from offset 0 equal a table from offset a.
struct RopeTable {
  at::Tensor cos, sin;
  /// Rows [offset, offset + length).
  RopeTable rows(int64_t offset, int64_t length) const;
};
RopeTable rope_table(int64_t offset, int64_t T, int64_t D, double base,
                     const at::TensorOptions& options);

/// Rotates x: [B, H, T, D] (D even) by a table of T rows and D/2 columns; interleaved pairs run the
/// fused CUDA kernel on CUDA tensors unless ops.fused_ops is off.
at::Tensor apply_rope(const at::Tensor& x, const RopeTable& table,
                      RopeStyle style = RopeStyle::kInterleaved, const ops::OpsOptions& ops = {});

/// Rotates x: [B, H, T, D] (D even) by angles (offset + t) * base^(-2i/D) for t in [0, T).
at::Tensor apply_rope(const at::Tensor& x, int64_t offset, double base);

}  // namespace hypnos::nn
