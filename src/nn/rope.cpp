// RoPE: the reference's `rope` with a position offset (retained tokens come first in sliding mode).
#include "hypnos/nn/rope.h"

#include "cuda/rope_cuda.h"
#include "nn/rope_composition.h"
#include "ops/fused_dispatch.h"

namespace hypnos::nn {

RopeTable RopeTable::rows(int64_t offset, int64_t length) const {
  TORCH_CHECK(offset >= 0 && offset + length <= cos.size(0), "RopeTable::rows: [", offset, ", ",
              offset + length, ") is outside a table of ", cos.size(0), " rows");
  return {cos.narrow(0, offset, length), sin.narrow(0, offset, length)};
}

RopeTable rope_table(int64_t offset, int64_t T, int64_t D, double base,
                     const at::TensorOptions& options) {
  TORCH_CHECK(D % 2 == 0, "rope_table: D must be even, got ", D);
  const auto angle_type = options.dtype() == at::kDouble ? at::kDouble : at::kFloat;
  const auto opts = options.dtype(angle_type);
  // inv: [D/2]; angle: [T, D/2]
  const at::Tensor inv = 1.0 / at::pow(base, at::arange(0, D, 2, opts) / static_cast<double>(D));
  const at::Tensor angle = at::arange(offset, offset + T, opts).unsqueeze(1) * inv.unsqueeze(0);
  return {angle.cos(), angle.sin()};
}

at::Tensor detail::apply_rope_composition(const at::Tensor& x, const RopeTable& table) {
  const int64_t D = x.size(3);
  const at::Tensor x1 = x.slice(-1, 0, D, 2), x2 = x.slice(-1, 1, D, 2);
  const at::Tensor &cos = table.cos, &sin = table.sin;
  return at::stack({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1).flatten(-2).to(x.scalar_type());
}

at::Tensor detail::apply_rope_half_composition(const at::Tensor& x, const RopeTable& table) {
  // Hugging Face's x * cos + rotate_half(x) * sin, its table [T, D] being ours twice over.
  const int64_t half = x.size(3) / 2;
  const at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  const at::Tensor &cos = table.cos, &sin = table.sin;
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1).to(x.scalar_type());
}

at::Tensor apply_rope(const at::Tensor& x, const RopeTable& table, RopeStyle style,
                      const ops::OpsOptions& ops) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0,
              "apply_rope: x must be [B, H, T, D] with even D, got ", x.sizes());
  const int64_t T = x.size(2), D = x.size(3);
  TORCH_CHECK(table.cos.size(0) == T && table.cos.size(1) == D / 2, "apply_rope: the table is ",
              table.cos.sizes(), ", x needs [", T, ", ", D / 2, "]");
  // The fused kernel pairs interleaved dimensions; half pairing runs as ATen operations.
  if (style == RopeStyle::kHalf) return detail::apply_rope_half_composition(x, table);
  return ops::fused_or_composition(
      ops, x, [&] { return detail::apply_rope_cuda(x, table); },
      [&] { return detail::apply_rope_composition(x, table); });
}

at::Tensor apply_rope(const at::Tensor& x, int64_t offset, double base) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0,
              "apply_rope: x must be [B, H, T, D] with even D, got ", x.sizes());
  return apply_rope(x, rope_table(offset, x.size(2), x.size(3), base, x.options()));
}

}  // namespace hypnos::nn
