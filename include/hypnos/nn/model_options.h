// ModelOptions: the `model.*` config section of a HybridLM (layer pattern, widths, MLP kind,
// backend).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hypnos/config/fields.h"
#include "hypnos/nn/rope.h"
#include "hypnos/ops/ops_options.h"

namespace hypnos::nn {

/// The block MLP: GELU (Linear d -> r*d, GELU, Linear r*d -> d) or SwiGLU
/// (down(silu(gate(x)) * up(x)), hidden width round_up(2/3 * r * d, 8) to keep the parameter
/// count).
enum class MlpKind { kGelu, kSwiglu };

/// The parameter names a model registers: hypnos's own (embed.weight, blocks.<i>.mixer...) or the
/// Hugging Face layout of a pretrained checkpoint (model.embed_tokens.weight,
/// model.layers.<i>.self_attn..., JetBlock generator dynamic_conv1d.kernel_generator.w1/w2), so
/// that named_parameters() gives the checkpoint's keys verbatim.
enum class ParameterNames { kHypnos, kHf };

struct ModelOptions {
  /// Token vocabulary (embedding rows and head outputs). Default: 0 (must be set).
  int64_t vocab_size = 0;
  /// Model width D. Default: 256.
  int64_t d_model = 256;
  /// Heads of attention and of the SSM layers. Default: 4.
  int64_t n_heads = 4;
  /// One letter per block: A attention, S sliding-window attention (swa_window), G GatedDeltaNet,
  /// J JetBlock. Default: "AGAG".
  std::string pattern = "AGAG";
  /// SSM key head dimension K (attention always uses d_model / n_heads). Default: 0 = d_model /
  /// n_heads.
  int64_t head_dim_k = 0;
  /// SSM value head dimension V. Default: 0 = d_model / n_heads.
  int64_t head_dim_v = 0;
  /// Block MLP kind. Default: gelu.
  MlpKind mlp = MlpKind::kGelu;
  /// MLP expansion ratio r. Default: 4.
  int64_t mlp_ratio = 4;
  /// Short (static or dynamic) convolution kernel size. Default: 4.
  int64_t conv_size = 4;
  /// How the ops compute (model.gdn_backend, model.gdn_kernel, model.gdn_scan_slice,
  /// model.gdn_forward_output, model.fused_ops: keys of this section, listed in OpsOptions::visit).
  /// Not architecture: a checkpoint's model takes the run's, and `hypnos eval` may change them.
  ops::OpsOptions ops;
  /// RoPE base frequency. Default: 10000.
  double rope_base = 10000.0;
  /// Epsilon of every RMSNorm. Default: 1e-6.
  double norm_eps = 1e-6;

  // What pretrained families need (nn/pretrained.h builds them from a checkpoint's config.json);
  // the defaults are hypnos's own models.
  /// A Hugging Face checkpoint directory to build the model from and load (config.json plus
  /// model.safetensors or a sharded index); every architecture key then comes from config.json.
  /// Default: "" (none).
  std::string from;
  /// Key/value heads of attention (grouped-query attention; divides n_heads). Default: 0 = n_heads.
  int64_t n_kv_heads = 0;
  /// Attention head dimension. Default: 0 = d_model / n_heads.
  int64_t head_dim = 0;
  /// Biases on attention's q, k and v projections (never on o). Default: false.
  bool attn_bias = false;
  /// RoPE pairing. Default: interleaved.
  RopeStyle rope_style = RopeStyle::kInterleaved;
  /// Keys an S (sliding-window attention) block sees per query, itself included. Default: 0.
  int64_t swa_window = 0;
  /// SwiGLU hidden width. Default: 0 = round_up(2/3 * mlp_ratio * d_model, 8).
  int64_t mlp_hidden = 0;
  /// Heads of the SSM blocks. Default: 0 = n_heads.
  int64_t ssm_heads = 0;
  /// Epsilon of the SSM blocks' output norm. Default: -1 = norm_eps.
  double ssm_norm_eps = -1.0;
  /// JetBlock kernel generator: hidden width H*V / this. Default: 8.
  int64_t generator_reduction = 8;
  /// The head reads the embedding matrix (no lm_head parameter). Default: false.
  bool tie_embeddings = false;
  /// Parameter names: hypnos | hf. Default: hypnos.
  ParameterNames names = ParameterNames::kHypnos;
  /// Sandwich blocks (Ouro): a norm also after the mixer and after the MLP, before each residual
  /// add. Default: false.
  bool sandwich = false;
  /// The final norm closes every pass over the whole stack and its output feeds the next pass
  /// (Ouro's loop); the head then reads h as it is. Default: false.
  bool loop_norm = false;
  /// Passes over the whole stack of the ordinary forward (Ouro's total_ut_steps; each pass with
  /// its own attention and state memory). Default: 1.
  int64_t ut_steps = 1;
  /// JetBlocks without an MLP inserted after these pattern blocks (Ouro + Jet layers), in
  /// execution order after their block; block indices everywhere else (sleep.loop_layers, memory)
  /// count them. Default: [] (none).
  std::vector<int64_t> inserted_jet_after;
  /// Keep Ouro's early-exit gate (Linear D -> 1, loaded and saved, never trained or used).
  /// Default: false.
  bool exit_gate = false;

  /// Blocks in execution order: the pattern's and the inserted JetBlocks.
  int64_t n_blocks() const {
    return static_cast<int64_t>(pattern.size() + inserted_jet_after.size());
  }

  int64_t resolved_ssm_heads() const { return ssm_heads > 0 ? ssm_heads : n_heads; }
  int64_t resolved_head_dim_k() const {
    return head_dim_k > 0 ? head_dim_k : d_model / resolved_ssm_heads();
  }
  int64_t resolved_head_dim_v() const {
    return head_dim_v > 0 ? head_dim_v : d_model / resolved_ssm_heads();
  }
  int64_t resolved_n_kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : d_model / n_heads; }
  double resolved_ssm_norm_eps() const { return ssm_norm_eps >= 0 ? ssm_norm_eps : norm_eps; }

  /// Throws std::invalid_argument naming the key, the value and what was expected.
  void validate() const;

  template <class V>
  void visit(V& v) {
    v.field("vocab_size", vocab_size, "token vocabulary size", config::Range{1, 1e9});
    v.field("d_model", d_model, "model width", config::Range{1, 1e6});
    v.field("n_heads", n_heads, "heads of attention and SSM layers", config::Range{1, 1024});
    v.field("pattern", pattern,
            "block letters: A attention, S sliding-window attention, G GatedDeltaNet, J JetBlock");
    v.field("head_dim_k", head_dim_k, "SSM key head dim (0 = d_model / n_heads)",
            config::Range{0, 1e5});
    v.field("head_dim_v", head_dim_v, "SSM value head dim (0 = d_model / n_heads)",
            config::Range{0, 1e5});
    v.field("mlp", mlp, "block MLP: gelu | swiglu");
    v.field("mlp_ratio", mlp_ratio, "MLP expansion ratio", config::Range{1, 64});
    v.field("conv_size", conv_size, "short convolution kernel size", config::Range{1, 64});
    ops.visit(v);  // flat keys beside the architecture: model.gdn_backend, ...
    v.field("rope_base", rope_base, "RoPE base frequency", config::Range{1, 1e12});
    v.field("norm_eps", norm_eps, "RMSNorm epsilon", config::Range{0, 1});
    v.field("from", from, "Hugging Face checkpoint directory to build and load (\"\" = none)");
    v.field("n_kv_heads", n_kv_heads, "attention key/value heads (0 = n_heads)",
            config::Range{0, 1024});
    v.field("head_dim", head_dim, "attention head dim (0 = d_model / n_heads)",
            config::Range{0, 1e5});
    v.field("attn_bias", attn_bias, "biases on attention's q, k, v projections");
    v.field("rope_style", rope_style, "RoPE pairing: interleaved | half");
    v.field("swa_window", swa_window, "keys an S block's query sees (itself included)",
            config::Range{0, 1e9});
    v.field("mlp_hidden", mlp_hidden, "SwiGLU hidden width (0 = from mlp_ratio)",
            config::Range{0, 1e7});
    v.field("ssm_heads", ssm_heads, "SSM block heads (0 = n_heads)", config::Range{0, 1024});
    v.field("ssm_norm_eps", ssm_norm_eps, "SSM output norm epsilon (-1 = norm_eps)",
            config::Range{-1, 1});
    v.field("generator_reduction", generator_reduction,
            "JetBlock kernel generator hidden = H*V / this", config::Range{1, 1e5});
    v.field("tie_embeddings", tie_embeddings, "the head reads the embedding matrix");
    v.field("names", names, "parameter names: hypnos | hf (a checkpoint's keys)");
    v.field("sandwich", sandwich, "norms also after the mixer and the MLP (Ouro)");
    v.field("loop_norm", loop_norm, "the final norm closes every pass over the stack (Ouro)");
    v.field("ut_steps", ut_steps, "passes of the ordinary forward (Ouro's total_ut_steps)",
            config::Range{1, 64});
    v.field("inserted_jet_after", inserted_jet_after,
            "pattern blocks followed by an inserted JetBlock without MLP", config::Range{0, 1e6});
    v.field("exit_gate", exit_gate, "keep Ouro's early-exit gate weights (unused)");
  }
};

}  // namespace hypnos::nn

template <>
struct hypnos::config::EnumNames<hypnos::nn::MlpKind> {
  static constexpr std::array<std::string_view, 2> names{"gelu", "swiglu"};
};

template <>
struct hypnos::config::EnumNames<hypnos::nn::RopeStyle> {
  static constexpr std::array<std::string_view, 2> names{"interleaved", "half"};
};

template <>
struct hypnos::config::EnumNames<hypnos::nn::ParameterNames> {
  static constexpr std::array<std::string_view, 2> names{"hypnos", "hf"};
};
