// The SwiGLU gate kernels of swiglu.h: grid-stride loops over the [rows, F] output.
#include "swiglu.h"

#include <cuda_bf16.h>

#include "gdn_common.cuh"

namespace hypnos::kernels {
namespace {

using detail::from_float;
using detail::load;

constexpr int kBlock = 256;

template <bool kBackward, typename T>
__global__ void __launch_bounds__(kBlock) silu_mul_kernel(SiluMulParams p) {
  const int64_t F = p.features, total = p.rows * F;
  const T* h = static_cast<const T*>(p.h);
  for (int64_t idx = int64_t(blockIdx.x) * kBlock + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * kBlock) {
    const int64_t row = idx / F, f = idx % F, at_g = row * 2 * F + f, at_u = at_g + F;
    const float g = load(h + at_g), u = load(h + at_u);
    const float s = detail::sigmoid(g);
    if constexpr (!kBackward) {
      static_cast<T*>(p.y)[idx] = from_float<T>(g * s * u);
    } else {
      const float dy = load(static_cast<const T*>(p.grad_y) + idx);
      T* grad_h = static_cast<T*>(p.grad_h);
      grad_h[at_g] = from_float<T>(dy * u * detail::silu_grad(g, s));
      grad_h[at_u] = from_float<T>(dy * g * s);
    }
  }
}

template <bool kBackward>
cudaError_t launch(const SiluMulParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.features <= 0 || !p.h || (kBackward ? (!p.grad_y || !p.grad_h) : !p.y)) {
    return cudaErrorInvalidValue;
  }
  const int64_t total = p.rows * p.features;
  return detail::launch_typed(p.dtype, detail::grid_for(total, kBlock), kBlock, stream, p,
                              [](auto tag) { return silu_mul_kernel<kBackward, decltype(tag)>; });
}

}  // namespace

cudaError_t silu_mul_fwd(const SiluMulParams& p, cudaStream_t stream) {
  return launch<false>(p, stream);
}

cudaError_t silu_mul_bwd(const SiluMulParams& p, cudaStream_t stream) {
  return launch<true>(p, stream);
}

}  // namespace hypnos::kernels
