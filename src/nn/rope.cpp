// RoPE: the reference's `rope` with a position offset (retained tokens come first in sliding mode).
#include "hypnos/nn/rope.h"

namespace hypnos::nn {

at::Tensor apply_rope(const at::Tensor& x, int64_t offset, double base) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "apply_rope: x must be [B, H, T, D] with even D, got ",
              x.sizes());
  const int64_t T = x.size(2), D = x.size(3);
  const auto angle_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto opts = x.options().dtype(angle_type);
  // inv: [D/2]; angle: [T, D/2]
  const at::Tensor inv = 1.0 / at::pow(base, at::arange(0, D, 2, opts) / static_cast<double>(D));
  const at::Tensor angle = at::arange(offset, offset + T, opts).unsqueeze(1) * inv.unsqueeze(0);
  const at::Tensor cos = angle.cos(), sin = angle.sin();
  const at::Tensor x1 = x.slice(-1, 0, D, 2), x2 = x.slice(-1, 1, D, 2);
  return at::stack({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1).flatten(-2).to(x.scalar_type());
}

}  // namespace hypnos::nn
