// Internal: the one decision between a fused CUDA kernel and the ATen composition that defines it,
// shared by every op that has both (ops/gdn_fused.h, RoPE, SwiGLU's gate).
#pragma once
#include <ATen/ATen.h>

#include <utility>

#include "hypnos/ops/ops_options.h"

namespace hypnos::ops {

/// Whether this build holds hypnos's CUDA kernels (kernels/ and their wrappers in src/cuda/).
#ifdef HYPNOS_WITH_CUDA_KERNELS
inline constexpr bool kCudaKernelsBuilt = true;
#else
inline constexpr bool kCudaKernelsBuilt = false;
#endif

/// fused() when the kernels were built, ops.fused_ops is on and x is a non-empty CUDA tensor, and
/// fused() takes the inputs (it returns an optional: nullopt for a dtype, shape or layout its
/// kernel does not take); composition() otherwise. Without the kernels fused() is never
/// instantiated, so it may name the wrappers of src/cuda/, which such a build does not compile.
template <class Fused, class Composition>
auto fused_or_composition(const OpsOptions& ops, const at::Tensor& x, Fused&& fused,
                          Composition&& composition) {
  if constexpr (kCudaKernelsBuilt) {
    if (ops.fused_ops && x.is_cuda() && x.numel() > 0) {
      if (auto out = fused()) return std::move(*out);
    }
  }
  return composition();
}

}  // namespace hypnos::ops
