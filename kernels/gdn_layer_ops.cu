// The fused elementwise and row-wise kernels of gdn_layer_ops.h. Row-wise ones give each head row
// to one warp (lane l owns elements l, l + 32, ...); elementwise ones are grid-stride loops over
// the flattened output. Every weight gradient is a sum of per-block partials in a fixed order (no
// atomics), so results do not depend on scheduling.
#include "gdn_layer_ops.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "fast_divmod.cuh"
#include "gdn_common.cuh"

namespace hypnos::kernels {
namespace {

using detail::by_dtype;
using detail::from_float;
using detail::grid_for;
using detail::launch_typed;
using detail::load;
using detail::sigmoid;
using detail::silu_grad;
using detail::warp_sum;

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
constexpr int kMaxRowPerLane = 8;   // row length up to 256
constexpr int kConvTokens = 32;     // tokens per block of the conv backward
constexpr int kConvChannels = 128;  // channels per block of the conv backward
constexpr float kL2Eps = 1e-12f;    // torch.nn.functional.normalize's
constexpr float kSoftplusThreshold = 20.f;

__device__ __forceinline__ int64_t grid_stride() {
  return int64_t(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ int64_t global_thread() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}

// ---------------------------------------------------------------- causal conv + SiLU

/// A launch of a dynamic-convolution kernel (one thread per element: its taps differ per token, so
/// there is nothing to slide): its params and the divisors that split its flat indices into
/// (batch, row, channel), built by the launcher (dynamic_conv_launch) so that no kernel divides
/// 64-bit integers per element. Flat indices stay below kConvIndexLimit (conv_ok).
static_assert(kConvIndexLimit <= kFastDivmodLimit, "conv indices must fit FastDivmod");
struct DynamicConvLaunch {
  DynamicConvSiluParams p;
  FastDivmod channels;     ///< C
  FastDivmod tokens;       ///< T
  FastDivmod padded_rows;  ///< T + W - 1, the rows of [cache; x]
  FastDivmod cache_rows;   ///< W - 1 (1 when W = 1: nothing is split by it then)
};

DynamicConvLaunch dynamic_conv_launch(const DynamicConvSiluParams& p) {
  return {p, FastDivmod(p.channels), FastDivmod(p.seq_len), FastDivmod(p.seq_len + p.width - 1),
          FastDivmod(std::max(p.width - 1, 1))};
}

/// (b, row, c) of flat index idx over [B, rows, C].
struct FlatIndex3 {
  int64_t b, row, c;
};
__device__ __forceinline__ FlatIndex3 split_index(int64_t idx, const FastDivmod& rows,
                                                  const FastDivmod& channels) {
  uint32_t br, c, b, row;
  channels.divmod(uint32_t(idx), br, c);
  rows.divmod(br, b, row);
  return {b, row, c};
}

/// Row r of [cache; x] for sequence b, channel c (r < W-1: the cache, zeros when there is none).
template <typename T>
__device__ __forceinline__ float conv_input(const ConvWindowParams& p, int64_t b, int64_t r,
                                            int64_t c) {
  const int64_t s = r - (p.width - 1);
  if (s >= 0) {
    return load(static_cast<const T*>(p.x.data) + b * p.x.stride_b + s * p.x.stride_t + c);
  }
  if (p.cache.data == nullptr) return 0.f;
  return load(static_cast<const T*>(p.cache.data) + b * p.cache.stride_b + r * p.cache.stride_t +
              c);
}

/// The next window's cache, rows T .. T+W-2 of [cache; x], by a grid-stride loop of the calling
/// kernel (the dynamic convolution's forward; the static one's slides into it).
template <typename T>
__device__ __forceinline__ void write_next_cache(const DynamicConvLaunch& launch) {
  const DynamicConvSiluParams& p = launch.p;
  if (p.next_cache == nullptr) return;
  const int64_t total = p.batch * (p.width - 1) * p.channels;
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const auto [b, r, c] = split_index(idx, launch.cache_rows, launch.channels);
    static_cast<T*>(p.next_cache)[idx] = from_float<T>(conv_input<T>(p, b, p.seq_len + r, c));
  }
}

/// Stores the gradient `acc` of row r of [cache; x] (both convolutions' backward), adding the
/// next cache's gradient for the last W-1 rows: into grad_cache for r < W-1, else into grad_x.
template <typename T>
__device__ __forceinline__ void store_input_grad(const ConvWindowParams& p, int64_t b, int64_t r,
                                                 int64_t c, float acc) {
  const int64_t C = p.channels;
  if (p.grad_next_cache != nullptr && r >= p.seq_len) {
    acc += load(static_cast<const T*>(p.grad_next_cache) + (b * (p.width - 1) + r - p.seq_len) * C +
                c);
  }
  if (r < p.width - 1) {
    static_cast<T*>(p.grad_cache)[(b * (p.width - 1) + r) * C + c] = from_float<T>(acc);
  } else {
    static_cast<T*>(p.grad_x)[(b * p.seq_len + r - (p.width - 1)) * C + c] = from_float<T>(acc);
  }
}

// The static convolution's kernels slide along the tokens of one sequence, one thread per channel:
// the last taps stay in registers, so each row of [cache; x] (or of d loss / d(conv output)) is
// loaded once instead of W times, and no flat index is split per element. Taps are aligned to the
// end of a kMaxConvWidth register window whatever W is (all indices static: registers, not local
// memory): tap j of width W sits at slot kMaxConvWidth - W + j, the slots below hold nothing used.
constexpr int kSlideTokens = 8;  // tokens (rows) per thread of the forward and input-gradient pass

/// Row block `part` of a sequence, blocks of `rows_per_block` rows: sequence b, rows [r0, r1).
struct RowBlock {
  int64_t b, r0, r1;
};
__device__ __forceinline__ RowBlock row_block(int64_t part, int64_t rows, int rows_per_block) {
  const int64_t blocks_per_seq = (rows + rows_per_block - 1) / rows_per_block;
  const int64_t b = part / blocks_per_seq, r0 = (part % blocks_per_seq) * rows_per_block;
  return {b, r0, r0 + rows_per_block < rows ? r0 + rows_per_block : rows};
}

/// The weights of channel c aligned to the end of the window (zeros below).
__device__ __forceinline__ void aligned_weights(const ConvSiluParams& p, int64_t c,
                                                float (&w)[kMaxConvWidth]) {
  const int lead = kMaxConvWidth - p.width;
#pragma unroll
  for (int i = 0; i < kMaxConvWidth; ++i)
    w[i] = i >= lead ? __ldg(p.weight + c * p.width + i - lead) : 0.f;
}

/// window[i] = row t0 - 1 + i - (kMaxConvWidth - W) of [cache; x] for the W - 1 slots below the
/// top: the taps before the row of token t0 (which is row t0 + W - 1).
template <typename T>
__device__ __forceinline__ void fill_window(const ConvSiluParams& p, int64_t b, int64_t t0,
                                            int64_t c, float (&window)[kMaxConvWidth]) {
  const int lead = kMaxConvWidth - p.width;
#pragma unroll
  for (int i = 0; i < kMaxConvWidth; ++i) {
    window[i] = i > lead ? conv_input<T>(p, b, t0 - 1 + i - lead, c) : 0.f;
  }
}

/// Shifts the window down by one slot and puts `x` on top.
__device__ __forceinline__ void push(float (&window)[kMaxConvWidth], float x) {
#pragma unroll
  for (int i = 0; i + 1 < kMaxConvWidth; ++i) window[i] = window[i + 1];
  window[kMaxConvWidth - 1] = x;
}

/// sum over the W taps of w[i] window[i] (slots below the taps are skipped, not multiplied by 0:
/// an infinite input must not reach outputs it does not feed).
__device__ __forceinline__ float taps(const float (&w)[kMaxConvWidth],
                                      const float (&window)[kMaxConvWidth], int width) {
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxConvWidth; ++i) {
    if (i >= kMaxConvWidth - width) acc = fmaf(w[i], window[i], acc);
  }
  return acc;
}

// grid (B * ceil(T / kSlideTokens), ceil(C / kConvChannels)): channel c of tokens [t0, t1) of
// sequence b; the block with the sequence's last tokens also writes the next window's cache.
// (The occupancy hint of 4 blocks lets ptxas use about 54 registers; for sm_90 it otherwise picks
// 32 and spills the window.)
template <typename T>
__global__ void __launch_bounds__(kConvChannels, 4) conv_silu_fwd_kernel(ConvSiluParams p) {
  const int64_t C = p.channels, c = int64_t(blockIdx.y) * kConvChannels + threadIdx.x;
  if (c >= C) return;
  const auto [b, t0, t1] = row_block(blockIdx.x, p.seq_len, kSlideTokens);
  float w[kMaxConvWidth], window[kMaxConvWidth];
  aligned_weights(p, c, w);
  fill_window<T>(p, b, t0, c, window);
  const T* x = static_cast<const T*>(p.x.data) + b * p.x.stride_b + c;
  T* y = static_cast<T*>(p.y) + b * p.seq_len * C + c;
#pragma unroll
  for (int k = 0; k < kSlideTokens; ++k) {
    const int64_t t = t0 + k;
    if (t >= t1) break;
    push(window, load(x + t * p.x.stride_t));
    const float acc = taps(w, window, p.width);
    y[t * C] = from_float<T>(acc * sigmoid(acc));
  }
  if (p.next_cache != nullptr && t1 == p.seq_len) {
    // The window now holds rows T + r of [cache; x], r < W - 1, in its top W - 1 slots.
    T* next = static_cast<T*>(p.next_cache) + b * (p.width - 1) * C + c;
    const int lead = kMaxConvWidth - p.width;
#pragma unroll
    for (int i = 0; i < kMaxConvWidth; ++i) {
      if (i > lead) next[(i - lead - 1) * C] = from_float<T>(window[i]);
    }
  }
}

// grid (conv_silu_partials(B, T), ceil(C / kConvChannels)): one thread per channel walks a block
// of kConvTokens tokens of one sequence, writes d loss / d(conv output) and its share of the weight
// gradient.
template <typename T>
__global__ void __launch_bounds__(kConvChannels) conv_silu_bwd_pre_kernel(ConvSiluParams p) {
  const int64_t C = p.channels, c = int64_t(blockIdx.y) * kConvChannels + threadIdx.x;
  if (c >= C) return;
  const int64_t part = blockIdx.x;
  const auto [b, t0, t1] = row_block(part, p.seq_len, kConvTokens);
  float w[kMaxConvWidth], window[kMaxConvWidth], dw[kMaxConvWidth] = {};
  aligned_weights(p, c, w);
  fill_window<T>(p, b, t0, c, window);
  const T* x = static_cast<const T*>(p.x.data) + b * p.x.stride_b + c;
  const T* grad_y = static_cast<const T*>(p.grad_y) + b * p.seq_len * C + c;
  float* grad_pre = p.grad_pre + b * p.seq_len * C + c;
  const int lead = kMaxConvWidth - p.width;
#pragma unroll 8
  for (int64_t t = t0; t < t1; ++t) {
    push(window, load(x + t * p.x.stride_t));
    const float acc = taps(w, window, p.width);
    const float pre = load(grad_y + t * C) * silu_grad(acc, sigmoid(acc));
    grad_pre[t * C] = pre;
#pragma unroll
    for (int i = 0; i < kMaxConvWidth; ++i) {
      if (i >= lead) dw[i] = fmaf(pre, window[i], dw[i]);
    }
  }
  float* partial = p.grad_weight_partial + (part * C + c) * p.width;
#pragma unroll
  for (int i = 0; i < kMaxConvWidth; ++i) {
    if (i >= lead) partial[i - lead] = dw[i];
  }
}

// Row r of [cache; x] feeds outputs t = r - j (j < W): its gradient is sum_j w[c, j] * pre[t],
// plus, for the last W-1 rows (r >= T), the gradient of the next window's cache row r - T.
// grid (B * ceil((T + W - 1) / kSlideTokens), ceil(C / kConvChannels)); the window slides over
// pre: slot kMaxConvWidth - 1 - j holds pre[r - j].
template <typename T>
__global__ void __launch_bounds__(kConvChannels) conv_silu_bwd_input_kernel(ConvSiluParams p) {
  const int64_t C = p.channels, c = int64_t(blockIdx.y) * kConvChannels + threadIdx.x;
  if (c >= C) return;
  const int64_t T_len = p.seq_len;
  const auto [b, r0, r1] = row_block(blockIdx.x, T_len + p.width - 1, kSlideTokens);
  const float* pre = p.grad_pre + b * T_len * C + c;
  auto pre_at = [&](int64_t t) { return t >= 0 && t < T_len ? pre[t * C] : 0.f; };
  float w[kMaxConvWidth], window[kMaxConvWidth];
#pragma unroll
  for (int i = 0; i < kMaxConvWidth; ++i) {  // tap j = kMaxConvWidth - 1 - i at slot i
    const int j = kMaxConvWidth - 1 - i;
    w[i] = j < p.width ? __ldg(p.weight + c * p.width + j) : 0.f;
    window[i] = j < p.width - 1 ? pre_at(r0 - 1 - j) : 0.f;  // after the first push: r0 - (j + 1)
  }
#pragma unroll
  for (int k = 0; k < kSlideTokens; ++k) {
    const int64_t r = r0 + k;
    if (r >= r1) break;
    push(window, pre_at(r));
    if (r < p.width - 1 && p.grad_cache == nullptr) continue;  // no cache gradient wanted
    store_input_grad<T>(p, b, r, c, taps(w, window, p.width));
  }
}

// ---------------------------------------------------------------- dynamic conv + SiLU (JetBlock)

/// The pre-activation of output idx = (b, t, c): sum_j kernel[idx, j] * row t + j of [cache; x],
/// with the taps' inputs left in xv (zero past W).
template <typename T>
__device__ __forceinline__ float dynamic_conv_pre(const DynamicConvSiluParams& p, int64_t idx,
                                                  int64_t b, int64_t t, int64_t c,
                                                  float (&xv)[kMaxConvWidth]) {
  const T* kernel = static_cast<const T*>(p.kernel) + idx * p.width;
  float acc = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxConvWidth; ++j) {
    xv[j] = j < p.width ? conv_input<T>(p, b, t + j, c) : 0.f;
    if (j < p.width) acc = fmaf(load(kernel + j), xv[j], acc);
  }
  return acc;
}

template <typename T>
__global__ void __launch_bounds__(kBlock) dynamic_conv_silu_fwd_kernel(DynamicConvLaunch launch) {
  const DynamicConvSiluParams& p = launch.p;
  const int64_t total = p.batch * p.seq_len * p.channels;
  T* y = static_cast<T*>(p.y);
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const auto [b, t, c] = split_index(idx, launch.tokens, launch.channels);
    float xv[kMaxConvWidth];
    const float acc = dynamic_conv_pre<T>(p, idx, b, t, c, xv);
    y[idx] = from_float<T>(acc * sigmoid(acc));
  }
  write_next_cache<T>(launch);
}

// Per output element: d loss / d(conv output) and the gradient of its own kernel taps.
template <typename T>
__global__ void __launch_bounds__(kBlock)
    dynamic_conv_silu_bwd_pre_kernel(DynamicConvLaunch launch) {
  const DynamicConvSiluParams& p = launch.p;
  const int64_t total = p.batch * p.seq_len * p.channels;
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const auto [b, t, c] = split_index(idx, launch.tokens, launch.channels);
    float xv[kMaxConvWidth];
    const float acc = dynamic_conv_pre<T>(p, idx, b, t, c, xv);
    const float pre = load(static_cast<const T*>(p.grad_y) + idx) * silu_grad(acc, sigmoid(acc));
    p.grad_pre[idx] = pre;
#pragma unroll
    for (int j = 0; j < kMaxConvWidth; ++j) {
      if (j < p.width)
        static_cast<T*>(p.grad_kernel)[idx * p.width + j] = from_float<T>(pre * xv[j]);
    }
  }
}

// Row r of [cache; x] feeds outputs t = r - j through their own taps kernel[b, t, c, j].
template <typename T>
__global__ void __launch_bounds__(kBlock)
    dynamic_conv_silu_bwd_input_kernel(DynamicConvLaunch launch) {
  const DynamicConvSiluParams& p = launch.p;
  const int64_t C = p.channels, total = p.batch * (p.seq_len + p.width - 1) * C;
  const T* kernel = static_cast<const T*>(p.kernel);
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const auto [b, r, c] = split_index(idx, launch.padded_rows, launch.channels);
    if (r < p.width - 1 && p.grad_cache == nullptr) continue;  // no cache gradient wanted
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxConvWidth; ++j) {
      const int64_t t = r - j;
      if (j < p.width && t >= 0 && t < p.seq_len) {
        const int64_t at = (b * p.seq_len + t) * C + c;
        acc = fmaf(load(kernel + at * p.width + j), p.grad_pre[at], acc);
      }
    }
    store_input_grad<T>(p, b, r, c, acc);
  }
}

// ---------------------------------------------------------------- L2 norm (with SiLU)

/// Where head row `row` of a [B, T, H, D] layout starts in a row view.
__device__ __forceinline__ int64_t view_offset(const RowView& v, int64_t row, int64_t seq_len,
                                               int64_t heads, int dim) {
  const int64_t h = row % heads, bt = row / heads, t = bt % seq_len, b = bt / seq_len;
  return b * v.stride_b + t * v.stride_t + h * dim;
}

/// Loads lane's elements of the row; returns s (SiLU applied when asked) and keeps the raw input.
template <typename T>
__device__ __forceinline__ void load_l2_row(const L2NormParams& p, int64_t row, int lane,
                                            float (&raw)[kMaxRowPerLane],
                                            float (&s)[kMaxRowPerLane], float& norm) {
  const T* x = static_cast<const T*>(p.x.data) + view_offset(p.x, row, p.seq_len, p.heads, p.dim);
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxRowPerLane; ++i) {
    const int d = lane + 32 * i;
    raw[i] = d < p.dim ? load(x + d) : 0.f;
    s[i] = p.silu ? raw[i] * sigmoid(raw[i]) : raw[i];
    ss = fmaf(s[i], s[i], ss);
  }
  norm = sqrtf(warp_sum(ss));
}

template <typename T>
__global__ void __launch_bounds__(kBlock) l2norm_fwd_kernel(L2NormParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = p.batch * p.seq_len * p.heads;
  for (int64_t row = global_thread() / 32; row < rows; row += grid_stride() / 32) {
    float raw[kMaxRowPerLane], s[kMaxRowPerLane], norm;
    load_l2_row<T>(p, row, lane, raw, s, norm);
    const float inv = 1.f / fmaxf(norm, kL2Eps);
    T* y = static_cast<T*>(p.y) + row * p.dim;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < p.dim) y[d] = from_float<T>(s[i] * inv);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) l2norm_bwd_kernel(L2NormParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = p.batch * p.seq_len * p.heads;
  for (int64_t row = global_thread() / 32; row < rows; row += grid_stride() / 32) {
    float raw[kMaxRowPerLane], s[kMaxRowPerLane], norm;
    load_l2_row<T>(p, row, lane, raw, s, norm);
    const float inv = 1.f / fmaxf(norm, kL2Eps);
    const T* grad_y = static_cast<const T*>(p.grad_y) + row * p.dim;
    float dy[kMaxRowPerLane], dot = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      dy[i] = d < p.dim ? load(grad_y + d) : 0.f;
      dot = fmaf(s[i] * inv, dy[i], dot);
    }
    dot = warp_sum(dot);
    // Below the clamp the norm is the constant 1e-12 (clamp_min passes no gradient there).
    const bool clamped = norm < kL2Eps;
    T* grad_x = static_cast<T*>(p.grad_x) + row * p.dim;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d >= p.dim) continue;
      float ds = clamped ? dy[i] * inv : (dy[i] - s[i] * inv * dot) * inv;
      if (p.silu) ds *= silu_grad(raw[i], sigmoid(raw[i]));
      grad_x[d] = from_float<T>(ds);
    }
  }
}

// ---------------------------------------------------------------- gates

__device__ __forceinline__ float softplus(float x) {
  return x > kSoftplusThreshold ? x : log1pf(__expf(x));
}

template <typename T>
__device__ __forceinline__ float gate_input(const RowView& v, int64_t idx, int64_t seq_len,
                                            int64_t heads) {
  return load(static_cast<const T*>(v.data) + view_offset(v, idx, seq_len, heads, 1));
}

template <typename T>
__global__ void __launch_bounds__(kBlock) gates_fwd_kernel(GatesParams p) {
  const int64_t total = p.batch * p.seq_len * p.heads;
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const int64_t h = idx % p.heads;
    const float x = gate_input<T>(p.a, idx, p.seq_len, p.heads) + __ldg(p.dt_bias + h);
    p.g[idx] = -__expf(__ldg(p.A_log + h)) * softplus(x);
    p.beta[idx] = sigmoid(gate_input<T>(p.b, idx, p.seq_len, p.heads));
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) gates_bwd_kernel(GatesParams p) {
  const int64_t total = p.batch * p.seq_len * p.heads;
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const int64_t h = idx % p.heads;
    const float x = gate_input<T>(p.a, idx, p.seq_len, p.heads) + __ldg(p.dt_bias + h);
    const float decay_rate = __expf(__ldg(p.A_log + h));
    const float dg = p.grad_g[idx];
    const float dx = x > kSoftplusThreshold ? -decay_rate * dg : -decay_rate * dg * sigmoid(x);
    static_cast<T*>(p.grad_a)[idx] = from_float<T>(dx);
    p.grad_terms[idx] = dg * (-decay_rate * softplus(x));  // d g / d A_log = g
    p.grad_terms[total + idx] = dx;                        // d (a + dt_bias) / d dt_bias = 1
    const float beta = sigmoid(gate_input<T>(p.b, idx, p.seq_len, p.heads));
    static_cast<T*>(p.grad_b)[idx] = from_float<T>(p.grad_beta[idx] * beta * (1.f - beta));
  }
}

// ---------------------------------------------------------------- gated RMS norm

template <typename T>
__global__ void __launch_bounds__(kBlock) gated_norm_fwd_kernel(GatedNormParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = p.batch * p.seq_len * p.heads;
  for (int64_t row = global_thread() / 32; row < rows; row += grid_stride() / 32) {
    const T* x = static_cast<const T*>(p.x) + row * p.dim;
    const T* gate =
        static_cast<const T*>(p.gate.data) + view_offset(p.gate, row, p.seq_len, p.heads, p.dim);
    float xv[kMaxRowPerLane], ss = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      xv[i] = d < p.dim ? load(x + d) : 0.f;
      ss = fmaf(xv[i], xv[i], ss);
    }
    const float r = rsqrtf(warp_sum(ss) / float(p.dim) + p.eps);
    T* y = static_cast<T*>(p.y) + row * p.dim;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d >= p.dim) continue;
      const float gt = load(gate + d);
      y[d] = from_float<T>(xv[i] * r * __ldg(p.weight + d) * gt * sigmoid(gt));
    }
  }
}

// grid (gated_norm_partials(rows)): each warp walks rows gw, gw + 8 * gridDim, ... and its lanes
// accumulate the weight gradient of their elements; the block sums its 8 warps in order.
template <typename T>
__global__ void __launch_bounds__(kBlock) gated_norm_bwd_kernel(GatedNormParams p) {
  __shared__ float s_dw[kWarps][kMaxRowPerLane * 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t rows = p.batch * p.seq_len * p.heads;
  float dw[kMaxRowPerLane] = {};
  for (int64_t row = int64_t(blockIdx.x) * kWarps + warp; row < rows;
       row += int64_t(gridDim.x) * kWarps) {
    const int64_t gate_at = view_offset(p.gate, row, p.seq_len, p.heads, p.dim);
    const T* x = static_cast<const T*>(p.x) + row * p.dim;
    const T* gate = static_cast<const T*>(p.gate.data) + gate_at;
    const T* grad_y = static_cast<const T*>(p.grad_y) + row * p.dim;
    float xv[kMaxRowPerLane], ss = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      xv[i] = d < p.dim ? load(x + d) : 0.f;
      ss = fmaf(xv[i], xv[i], ss);
    }
    const float r = rsqrtf(warp_sum(ss) / float(p.dim) + p.eps);
    float dxhat[kMaxRowPerLane], dot = 0.f;
    T* grad_gate = static_cast<T*>(p.grad_gate) + row * p.dim;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      dxhat[i] = 0.f;
      if (d >= p.dim) continue;
      const float gt = load(gate + d), sg = sigmoid(gt), w = __ldg(p.weight + d);
      const float dy = load(grad_y + d), xhat = xv[i] * r;
      dw[i] = fmaf(dy * xhat, gt * sg, dw[i]);
      grad_gate[d] = from_float<T>(dy * xhat * w * silu_grad(gt, sg));
      dxhat[i] = dy * w * gt * sg;
      dot = fmaf(dxhat[i], xhat, dot);
    }
    dot = warp_sum(dot) / float(p.dim);
    T* grad_x = static_cast<T*>(p.grad_x) + row * p.dim;
#pragma unroll
    for (int i = 0; i < kMaxRowPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < p.dim) grad_x[d] = from_float<T>(r * (dxhat[i] - xv[i] * r * dot));
    }
  }
#pragma unroll
  for (int i = 0; i < kMaxRowPerLane; ++i) s_dw[warp][lane + 32 * i] = dw[i];
  __syncthreads();
  for (int d = threadIdx.x; d < p.dim; d += kBlock) {
    float sum = 0.f;
    for (int w = 0; w < kWarps; ++w) sum += s_dw[w][d];
    p.grad_weight_partial[int64_t(blockIdx.x) * p.dim + d] = sum;
  }
}

// ---------------------------------------------------------------- launchers

bool rows_ok(int64_t batch, int64_t seq_len, int64_t heads, int dim) {
  return batch > 0 && seq_len > 0 && heads > 0 && dim > 0 && dim <= 32 * kMaxRowPerLane;
}

bool conv_ok(const ConvWindowParams& p) {
  return p.batch > 0 && p.seq_len > 0 && p.channels > 0 && p.width >= 1 &&
         p.width <= kMaxConvWidth && p.x.data &&
         p.batch * (p.seq_len + p.width - 1) * p.channels < kConvIndexLimit;
}

}  // namespace

int64_t conv_silu_partials(int64_t batch, int64_t seq_len) {
  return batch * ((seq_len + kConvTokens - 1) / kConvTokens);
}

int64_t gated_norm_partials(int64_t rows) {
  return std::max<int64_t>(1, std::min<int64_t>((rows + kWarps - 1) / kWarps, 1024));
}

cudaError_t conv_silu_fwd(const ConvSiluParams& p, cudaStream_t stream) {
  if (!conv_ok(p) || !p.weight || !p.y) return cudaErrorInvalidValue;
  const int64_t channel_blocks = (p.channels + kConvChannels - 1) / kConvChannels;
  if (channel_blocks > 65535) return cudaErrorInvalidValue;
  const dim3 grid{unsigned(p.batch * ((p.seq_len + kSlideTokens - 1) / kSlideTokens)),
                  unsigned(channel_blocks)};
  return by_dtype(p.dtype, [&](auto tag) {
    conv_silu_fwd_kernel<decltype(tag)><<<grid, kConvChannels, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

cudaError_t conv_silu_bwd(const ConvSiluParams& p, cudaStream_t stream) {
  if (!conv_ok(p) || !p.weight || !p.grad_y || !p.grad_x || !p.grad_pre || !p.grad_weight_partial) {
    return cudaErrorInvalidValue;
  }
  const int64_t partials = conv_silu_partials(p.batch, p.seq_len);
  const int64_t channel_blocks = (p.channels + kConvChannels - 1) / kConvChannels;
  if (partials >= (int64_t(1) << 31) || channel_blocks > 65535) return cudaErrorInvalidValue;
  return by_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid{unsigned(partials), unsigned(channel_blocks)};
    conv_silu_bwd_pre_kernel<T><<<grid, kConvChannels, 0, stream>>>(p);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    const int64_t row_blocks = (p.seq_len + p.width - 1 + kSlideTokens - 1) / kSlideTokens;
    const dim3 input_grid{unsigned(p.batch * row_blocks), unsigned(channel_blocks)};
    conv_silu_bwd_input_kernel<T><<<input_grid, kConvChannels, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

cudaError_t dynamic_conv_silu_fwd(const DynamicConvSiluParams& p, cudaStream_t stream) {
  if (!conv_ok(p) || !p.kernel || !p.y) return cudaErrorInvalidValue;
  return launch_typed(p.dtype, grid_for(p.batch * p.seq_len * p.channels, kBlock), kBlock, stream,
                      dynamic_conv_launch(p),
                      [](auto tag) { return dynamic_conv_silu_fwd_kernel<decltype(tag)>; });
}

cudaError_t dynamic_conv_silu_bwd(const DynamicConvSiluParams& p, cudaStream_t stream) {
  if (!conv_ok(p) || !p.kernel || !p.grad_y || !p.grad_x || !p.grad_kernel || !p.grad_pre) {
    return cudaErrorInvalidValue;
  }
  const cudaError_t err = launch_typed(p.dtype, grid_for(p.batch * p.seq_len * p.channels, kBlock),
                                       kBlock, stream, dynamic_conv_launch(p), [](auto tag) {
                                         return dynamic_conv_silu_bwd_pre_kernel<decltype(tag)>;
                                       });
  if (err != cudaSuccess) return err;
  return launch_typed(p.dtype, grid_for(p.batch * (p.seq_len + p.width - 1) * p.channels, kBlock),
                      kBlock, stream, dynamic_conv_launch(p),
                      [](auto tag) { return dynamic_conv_silu_bwd_input_kernel<decltype(tag)>; });
}

cudaError_t l2norm_fwd(const L2NormParams& p, cudaStream_t stream) {
  if (!rows_ok(p.batch, p.seq_len, p.heads, p.dim) || !p.x.data || !p.y) {
    return cudaErrorInvalidValue;
  }
  return launch_typed(p.dtype, grid_for(p.batch * p.seq_len * p.heads, kWarps), kBlock, stream, p,
                      [](auto tag) { return l2norm_fwd_kernel<decltype(tag)>; });
}

cudaError_t l2norm_bwd(const L2NormParams& p, cudaStream_t stream) {
  if (!rows_ok(p.batch, p.seq_len, p.heads, p.dim) || !p.x.data || !p.grad_y || !p.grad_x) {
    return cudaErrorInvalidValue;
  }
  return launch_typed(p.dtype, grid_for(p.batch * p.seq_len * p.heads, kWarps), kBlock, stream, p,
                      [](auto tag) { return l2norm_bwd_kernel<decltype(tag)>; });
}

cudaError_t gates_fwd(const GatesParams& p, cudaStream_t stream) {
  if (!rows_ok(p.batch, p.seq_len, p.heads, 1) || !p.a.data || !p.b.data || !p.A_log ||
      !p.dt_bias || !p.g || !p.beta) {
    return cudaErrorInvalidValue;
  }
  return launch_typed(p.dtype, grid_for(p.batch * p.seq_len * p.heads, kBlock), kBlock, stream, p,
                      [](auto tag) { return gates_fwd_kernel<decltype(tag)>; });
}

cudaError_t gates_bwd(const GatesParams& p, cudaStream_t stream) {
  if (!rows_ok(p.batch, p.seq_len, p.heads, 1) || !p.a.data || !p.b.data || !p.A_log ||
      !p.dt_bias || !p.grad_g || !p.grad_beta || !p.grad_a || !p.grad_b || !p.grad_terms) {
    return cudaErrorInvalidValue;
  }
  return launch_typed(p.dtype, grid_for(p.batch * p.seq_len * p.heads, kBlock), kBlock, stream, p,
                      [](auto tag) { return gates_bwd_kernel<decltype(tag)>; });
}

cudaError_t gated_norm_fwd(const GatedNormParams& p, cudaStream_t stream) {
  if (!rows_ok(p.batch, p.seq_len, p.heads, p.dim) || !p.x || !p.gate.data || !p.weight || !p.y) {
    return cudaErrorInvalidValue;
  }
  return launch_typed(p.dtype, grid_for(p.batch * p.seq_len * p.heads, kWarps), kBlock, stream, p,
                      [](auto tag) { return gated_norm_fwd_kernel<decltype(tag)>; });
}

cudaError_t gated_norm_bwd(const GatedNormParams& p, cudaStream_t stream) {
  if (!rows_ok(p.batch, p.seq_len, p.heads, p.dim) || !p.x || !p.gate.data || !p.weight ||
      !p.grad_y || !p.grad_x || !p.grad_gate || !p.grad_weight_partial) {
    return cudaErrorInvalidValue;
  }
  const auto blocks = unsigned(gated_norm_partials(p.batch * p.seq_len * p.heads));
  return launch_typed(p.dtype, blocks, kBlock, stream, p,
                      [](auto tag) { return gated_norm_bwd_kernel<decltype(tag)>; });
}

}  // namespace hypnos::kernels
