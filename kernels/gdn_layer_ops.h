// Framework-free CUDA kernels for the elementwise and row-wise work around the gated delta rule in
// a GatedDeltaNet / JetBlock layer: each replaces a chain of ATen kernels (and their backward
// chains) by one pass over the data, which matters in sleep training where every window and pass
// runs these on small [B, window, C] tensors. Same conventions as gdn.h: plain params structs,
// launchers that return a status, fp32 arithmetic, no atomics (weight gradients are written as
// per-block partial sums that the caller reduces in a fixed order).
//
// Tensors are [B, T, ...] views whose innermost dimension is contiguous; a "row view" gives the
// element stride between consecutive batches and consecutive tokens, so slices of a fused
// projection (rows of stride 2HK + 2HV + 2H) are read in place.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "gdn.h"

namespace hypnos::kernels {

/// A [B, T, C] operand with contiguous channels: element (b, t, c) at data[b * stride_b +
/// t * stride_t + c].
struct RowView {
  const void* data = nullptr;
  int64_t stride_b = 0;
  int64_t stride_t = 0;
};

/// Largest short-convolution width the conv kernels take (the layers use 4).
inline constexpr int kMaxConvWidth = 8;

/// The convolutions take fewer than this many (2^31) elements of [cache; x]: the dynamic one splits
/// its flat indices in 32 bits, and one bound keeps both launchers' grids in range. Their launchers
/// refuse larger problems (the LibTorch side then runs the ATen composition).
inline constexpr int64_t kConvIndexLimit = int64_t(1) << 31;

/// What both convolutions share: a window's input xp = [cache (W-1 rows); x], the output y and the
/// next window's cache (the last W-1 rows of xp), and the gradients of each. x, cache, y,
/// next_cache and their gradients share `dtype`.
struct ConvWindowParams {
  RowView x;                   ///< [B, T, C]
  RowView cache;               ///< [B, W-1, C]; null data = zeros
  void* y = nullptr;           ///< [B, T, C] contiguous (forward output)
  void* next_cache = nullptr;  ///< [B, W-1, C] contiguous (forward output); may be null
  // ---- backward
  const void* grad_y = nullptr;           ///< [B, T, C] contiguous
  const void* grad_next_cache = nullptr;  ///< [B, W-1, C] contiguous; may be null: zeros
  void* grad_x = nullptr;                 ///< [B, T, C] contiguous
  void* grad_cache = nullptr;             ///< [B, W-1, C] contiguous; may be null: not written
  float* grad_pre = nullptr;              ///< workspace [B, T, C]: d loss / d (conv output)
  int64_t batch = 0, seq_len = 0, channels = 0;
  int width = 0;  ///< W, 1..kMaxConvWidth
  GdnDtype dtype = GdnDtype::kBFloat16;
};

/// y = SiLU(causal depthwise conv(x)) over the window: y[b, t, c] = silu(sum_j w[c, j] *
/// xp[b, t + j, c]). weight and its gradient are fp32.
struct ConvSiluParams : ConvWindowParams {
  const float* weight = nullptr;         ///< [C, W] contiguous
  float* grad_weight_partial = nullptr;  ///< [conv_silu_partials(B, T), C, W]; sum over rows
};

/// Rows of grad_weight_partial the backward writes (one per token block of one sequence).
int64_t conv_silu_partials(int64_t batch, int64_t seq_len);

cudaError_t conv_silu_fwd(const ConvSiluParams& p, cudaStream_t stream);
cudaError_t conv_silu_bwd(const ConvSiluParams& p, cudaStream_t stream);

/// JetBlock's dynamic convolution: y[b, t, c] = silu(sum_j kernel[b, t, c, j] * xp[b, t + j, c])
/// with a kernel per token; kernel and its gradient share `dtype` too.
struct DynamicConvSiluParams : ConvWindowParams {
  const void* kernel = nullptr;  ///< [B, T, C, W] contiguous
  void* grad_kernel = nullptr;   ///< [B, T, C, W] contiguous
};

cudaError_t dynamic_conv_silu_fwd(const DynamicConvSiluParams& p, cudaStream_t stream);
cudaError_t dynamic_conv_silu_bwd(const DynamicConvSiluParams& p, cudaStream_t stream);

/// y = s / max(||s||_2, 1e-12) per head row of length D, s = SiLU(x) (or x when !silu): x is
/// [B, T, H * D] (a row view), y and grad_x are [B, T, H, D] contiguous, grad_y too. D <= 256.
struct L2NormParams {
  RowView x;
  void* y = nullptr;
  const void* grad_y = nullptr;
  void* grad_x = nullptr;
  int64_t batch = 0, seq_len = 0, heads = 0;
  int dim = 0;
  bool silu = false;
  GdnDtype dtype = GdnDtype::kBFloat16;
};

cudaError_t l2norm_fwd(const L2NormParams& p, cudaStream_t stream);
cudaError_t l2norm_bwd(const L2NormParams& p, cudaStream_t stream);

/// The decay and write strength of every token and head: g = -exp(A_log[h]) * softplus(a +
/// dt_bias[h]) (softplus with threshold 20, as ATen), beta = sigmoid(b). a, b: [B, T, H] row views
/// in `dtype`; g, beta, grad_g, grad_beta fp32 [B, T, H] contiguous; grad_a, grad_b in `dtype`,
/// contiguous. The backward writes, instead of the [H] gradients of A_log and dt_bias, their
/// per-token terms: grad_terms [2, B, T, H] fp32 (grad_g * g, then d/d(a + dt_bias)), summed over
/// tokens by the caller.
struct GatesParams {
  RowView a, b;
  const float* A_log = nullptr;
  const float* dt_bias = nullptr;
  float* g = nullptr;
  float* beta = nullptr;
  const float* grad_g = nullptr;
  const float* grad_beta = nullptr;
  void* grad_a = nullptr;
  void* grad_b = nullptr;
  float* grad_terms = nullptr;
  int64_t batch = 0, seq_len = 0, heads = 0;
  GdnDtype dtype = GdnDtype::kBFloat16;
};

cudaError_t gates_fwd(const GatesParams& p, cudaStream_t stream);
cudaError_t gates_bwd(const GatesParams& p, cudaStream_t stream);

/// The gated output norm: y = x * rsqrt(mean(x^2) + eps) * weight * SiLU(gate) per head row of
/// length D. x, y, grad_y, grad_x: [B, T, H, D] contiguous in `dtype`; gate: [B, T, H * D] row
/// view, grad_gate [B, T, H * D] contiguous, both in `dtype`; weight [D] fp32. The backward writes
/// the weight gradient as grad_weight_partial [gated_norm_partials(rows), D]. D <= 256.
struct GatedNormParams {
  const void* x = nullptr;
  RowView gate;
  const float* weight = nullptr;
  void* y = nullptr;
  const void* grad_y = nullptr;
  void* grad_x = nullptr;
  void* grad_gate = nullptr;
  float* grad_weight_partial = nullptr;
  int64_t batch = 0, seq_len = 0, heads = 0;
  int dim = 0;
  float eps = 1e-6f;
  GdnDtype dtype = GdnDtype::kBFloat16;
};

/// Rows of grad_weight_partial the backward writes for `rows` = B * T * H head rows.
int64_t gated_norm_partials(int64_t rows);

cudaError_t gated_norm_fwd(const GatedNormParams& p, cudaStream_t stream);
cudaError_t gated_norm_bwd(const GatedNormParams& p, cudaStream_t stream);

}  // namespace hypnos::kernels
