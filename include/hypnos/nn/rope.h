// Rotary position embedding on interleaved pairs (x[2i], x[2i+1]), as in the reference.
#pragma once
#include <ATen/ATen.h>

namespace hypnos::nn {

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

/// Rotates x: [B, H, T, D] (D even) by a table of T rows and D/2 columns.
at::Tensor apply_rope(const at::Tensor& x, const RopeTable& table);

/// Rotates x: [B, H, T, D] (D even) by angles (offset + t) * base^(-2i/D) for t in [0, T).
at::Tensor apply_rope(const at::Tensor& x, int64_t offset, double base);

}  // namespace hypnos::nn
