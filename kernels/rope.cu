// The RoPE kernels of rope.h: a grid-stride loop over the (b, h, t, pair) of the output;
// consecutive threads take consecutive pairs of one row, so reads and writes are coalesced.
#include "rope.h"

#include <cuda_bf16.h>

#include "gdn_common.cuh"

namespace hypnos::kernels {
namespace {

using detail::from_float;
using detail::load;

constexpr int kBlock = 256;

/// Pair i of output row (b, h, t) per iteration: the forward rotates x's pair by the row's angle,
/// the backward rotates grad_y's pair back.
template <bool kBackward, typename T>
__global__ void __launch_bounds__(kBlock) rope_kernel(RopeParams p) {
  const int64_t half = p.dim / 2, total = p.batch * p.heads * p.seq_len * half;
  for (int64_t idx = int64_t(blockIdx.x) * kBlock + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * kBlock) {
    const int64_t i = idx % half, row = idx / half;  // row = (b, h, t) of a contiguous output
    const int64_t t = row % p.seq_len, bh = row / p.seq_len, h = bh % p.heads, b = bh / p.heads;
    const float c = __ldg(p.cos + t * p.table_stride + i),
                s = __ldg(p.sin + t * p.table_stride + i);
    const int64_t out = row * p.dim + 2 * i;
    if constexpr (!kBackward) {
      const T* x = static_cast<const T*>(p.x) + b * p.stride_b + h * p.stride_h + t * p.stride_t;
      const float x1 = load(x + 2 * i), x2 = load(x + 2 * i + 1);
      T* y = static_cast<T*>(p.y);
      y[out] = from_float<T>(x1 * c - x2 * s);
      y[out + 1] = from_float<T>(x1 * s + x2 * c);
    } else {
      const T* grad_y = static_cast<const T*>(p.grad_y);
      const float d1 = load(grad_y + out), d2 = load(grad_y + out + 1);
      T* grad_x = static_cast<T*>(p.grad_x);
      grad_x[out] = from_float<T>(d1 * c + d2 * s);
      grad_x[out + 1] = from_float<T>(d2 * c - d1 * s);
    }
  }
}

template <bool kBackward>
cudaError_t launch(const RopeParams& p, cudaStream_t stream) {
  if (p.batch <= 0 || p.heads <= 0 || p.seq_len <= 0 || p.dim <= 0 || p.dim % 2 != 0 || !p.cos ||
      !p.sin || (kBackward ? (!p.grad_y || !p.grad_x) : (!p.x || !p.y))) {
    return cudaErrorInvalidValue;
  }
  const int64_t total = p.batch * p.heads * p.seq_len * (p.dim / 2);
  return detail::launch_typed(p.dtype, detail::grid_for(total, kBlock), kBlock, stream, p,
                              [](auto tag) { return rope_kernel<kBackward, decltype(tag)>; });
}

}  // namespace

cudaError_t rope_fwd(const RopeParams& p, cudaStream_t stream) {
  return launch<false>(p, stream);
}

cudaError_t rope_bwd(const RopeParams& p, cudaStream_t stream) {
  return launch<true>(p, stream);
}

}  // namespace hypnos::kernels
