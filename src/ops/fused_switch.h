// Internal: the switch between hypnos's fused CUDA kernels for a layer's small ops (the
// GatedDeltaNet and JetBlock steps of ops/gdn_fused.h, RoPE, SwiGLU) and the ATen compositions that
// define them.
#pragma once
#include <ATen/ATen.h>

namespace hypnos::ops::fused {

/// Whether CUDA tensors take the fused kernels: yes unless the environment variable
/// HYPNOS_FUSED_OPS is "0" (the ATen compositions then run everywhere: an A/B switch for
/// benchmarks and a way around a suspected kernel bug). Read once; a value other than "", "0" or
/// "1" throws std::invalid_argument naming it.
bool cuda_kernels_enabled();

/// Whether an op on x should try its fused CUDA kernel: x is a non-empty CUDA tensor and the
/// switch is on. (The kernel's own wrapper may still refuse shapes or dtypes it does not take.)
bool use_fused_cuda(const at::Tensor& x);

}  // namespace hypnos::ops::fused
