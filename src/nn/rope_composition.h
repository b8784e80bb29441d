// Internal: RoPE as ATen operations (the definition the fused CUDA kernel is compared against, and
// the path everywhere else).
#pragma once
#include <ATen/ATen.h>

#include "hypnos/nn/rope.h"

namespace hypnos::nn::detail {

/// apply_rope without the checks and without the kernel: x [B, H, T, D], table [T, D/2].
at::Tensor apply_rope_composition(const at::Tensor& x, const RopeTable& table);

/// The same with half pairing (RopeStyle::kHalf): dimension i turns with dimension i + D/2.
at::Tensor apply_rope_half_composition(const at::Tensor& x, const RopeTable& table);

}  // namespace hypnos::nn::detail
