// Internal: the switch between hypnos's fused CUDA kernels for a layer's small ops (the
// GatedDeltaNet and JetBlock steps of ops/gdn_fused.h, RoPE) and the ATen compositions that define
// them.
#pragma once

namespace hypnos::ops::fused {

/// Whether CUDA tensors take the fused kernels: yes unless the environment variable
/// HYPNOS_FUSED_OPS is "0" (the ATen compositions then run everywhere: an A/B switch for
/// benchmarks and a way around a suspected kernel bug). Read once; a value other than "", "0" or
/// "1" throws std::invalid_argument naming it.
bool cuda_kernels_enabled();

}  // namespace hypnos::ops::fused
