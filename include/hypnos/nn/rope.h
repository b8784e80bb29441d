// Rotary position embedding on interleaved pairs (x[2i], x[2i+1]), as in the reference.
#pragma once
#include <ATen/ATen.h>

namespace hypnos::nn {

/// Rotates x: [B, H, T, D] (D even) by angles (offset + t) * base^(-2i/D) for t in [0, T).
/// Angles are computed in fp32 (double for double x), matching the reference's fp32 path.
at::Tensor apply_rope(const at::Tensor& x, int64_t offset, double base);

}  // namespace hypnos::nn
