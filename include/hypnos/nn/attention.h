// Causal multi-head attention with RoPE over this window's keys plus an optional retained KV block
// (sliding eviction); the block lives in the LayerMemory passed in, never in the module.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "hypnos/nn/mixer.h"
#include "hypnos/nn/model_options.h"
#include "hypnos/nn/rope.h"

namespace hypnos::nn {

struct AttentionOptions {
  AttentionOptions(int64_t d_model, int64_t n_heads) : d_model_(d_model), n_heads_(n_heads) {}
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, n_heads);
  /// RoPE base. Default: 10000.
  TORCH_ARG(double, rope_base) = 10000.0;
  /// RoPE pairing. Default: interleaved.
  TORCH_ARG(RopeStyle, rope_style) = RopeStyle::kInterleaved;
  /// Key/value heads (grouped-query attention: query head i reads kv head i / (H / H_kv)).
  /// Default: 0 = n_heads.
  TORCH_ARG(int64_t, n_kv_heads) = 0;
  /// Head dimension. Default: 0 = d_model / n_heads.
  TORCH_ARG(int64_t, head_dim) = 0;
  /// Biases on q, k and v (Qwen2). Default: false.
  TORCH_ARG(bool, bias) = false;
  /// Sliding-window attention: a query sees at most this many keys, itself included, in every
  /// call (combined with the caller's span). Default: 0 = unlimited.
  TORCH_ARG(int64_t, window) = 0;
  /// The ops' implementation choices (here: whether RoPE runs its fused CUDA kernel). Default:
  /// OpsOptions{}.
  TORCH_ARG(ops::OpsOptions, ops);

 public:
  int64_t kv_heads() const { return n_kv_heads_ > 0 ? n_kv_heads_ : n_heads_; }
  int64_t dim() const { return head_dim_ > 0 ? head_dim_ : d_model_ / n_heads_; }
};

/// Parameters: q_proj [H*Dh, D], k_proj and v_proj [H_kv*Dh, D] (+ biases with `bias`), o_proj
/// [D, H*Dh] (never a bias).
class AttentionImpl : public torch::nn::Cloneable<AttentionImpl> {
 public:
  explicit AttentionImpl(AttentionOptions options);
  void reset() override;

  /// x: [B, T, D]; memory.key/value: retained [B, H_kv, R, Dh] (pre-RoPE) or undefined.
  /// `span`: a query sees keys at most span-1 tokens back (itself included: span keys); 0 = all.
  /// Retained tokens take positions 0..R-1 and this window's R..R+T-1 (RoPE is relative, so only
  /// the differences matter). Returns y: [B, T, D] and written.key/value = retained ++ current.
  MixerOutput forward(const at::Tensor& x, const memory::LayerMemory& memory, int64_t span = 0);

  AttentionOptions options;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  /// RoPE cos/sin rows 0..length-1 (cached per device and angle dtype).
  RopeTable rope_rows(int64_t length, int64_t dim, const at::TensorOptions& options);
  std::map<std::pair<std::string, at::ScalarType>, RopeTable> rope_cache_;
  std::vector<RopeTable> rope_retired_;  // tables a longer one replaced (a few, kept alive)
  /// The boolean mask [T, R+T] of queries R..R+T-1 over keys 0..R+T-1 with a span limit, cached
  /// per (device, R, T, span): a sleep step asks for the same few every window and pass. Never
  /// dropped (a captured CUDA graph reads them; a run has a handful).
  const at::Tensor& attention_mask(const at::Device& device, int64_t R, int64_t T, int64_t span);
  std::map<std::tuple<std::string, int64_t, int64_t, int64_t>, at::Tensor> mask_cache_;
};
TORCH_MODULE(Attention);

}  // namespace hypnos::nn
