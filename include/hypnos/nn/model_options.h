// ModelOptions: the `model.*` config section of a HybridLM (layer pattern, widths, MLP kind,
// backend).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "hypnos/config/fields.h"
#include "hypnos/ops/gated_delta_rule.h"

namespace hypnos::nn {

/// The block MLP: GELU (Linear d -> r*d, GELU, Linear r*d -> d) or SwiGLU
/// (down(silu(gate(x)) * up(x)), hidden width round_up(2/3 * r * d, 8) to keep the parameter
/// count).
enum class MlpKind { kGelu, kSwiglu };

struct ModelOptions {
  /// Token vocabulary (embedding rows and head outputs). Default: 0 (must be set).
  int64_t vocab_size = 0;
  /// Model width D. Default: 256.
  int64_t d_model = 256;
  /// Heads of attention and of the SSM layers. Default: 4.
  int64_t n_heads = 4;
  /// One letter per block: A attention, G GatedDeltaNet, J JetBlock. Default: "AGAG".
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
  /// Gated delta rule implementation. Default: auto.
  ops::GdnBackend gdn_backend = ops::GdnBackend::kAuto;
  /// RoPE base frequency. Default: 10000.
  double rope_base = 10000.0;
  /// Epsilon of every RMSNorm. Default: 1e-6.
  double norm_eps = 1e-6;

  int64_t resolved_head_dim_k() const { return head_dim_k > 0 ? head_dim_k : d_model / n_heads; }
  int64_t resolved_head_dim_v() const { return head_dim_v > 0 ? head_dim_v : d_model / n_heads; }

  /// Throws std::invalid_argument naming the key, the value and what was expected.
  void validate() const;

  template <class V>
  void visit(V& v) {
    v.field("vocab_size", vocab_size, "token vocabulary size", config::Range{1, 1e9});
    v.field("d_model", d_model, "model width", config::Range{1, 1e6});
    v.field("n_heads", n_heads, "heads of attention and SSM layers", config::Range{1, 1024});
    v.field("pattern", pattern, "block letters: A attention, G GatedDeltaNet, J JetBlock");
    v.field("head_dim_k", head_dim_k, "SSM key head dim (0 = d_model / n_heads)",
            config::Range{0, 1e5});
    v.field("head_dim_v", head_dim_v, "SSM value head dim (0 = d_model / n_heads)",
            config::Range{0, 1e5});
    v.field("mlp", mlp, "block MLP: gelu | swiglu");
    v.field("mlp_ratio", mlp_ratio, "MLP expansion ratio", config::Range{1, 64});
    v.field("conv_size", conv_size, "short convolution kernel size", config::Range{1, 64});
    v.field("gdn_backend", gdn_backend, "gated delta rule: auto | reference | chunked | cuda");
    v.field("rope_base", rope_base, "RoPE base frequency", config::Range{1, 1e12});
    v.field("norm_eps", norm_eps, "RMSNorm epsilon", config::Range{0, 1});
  }
};

}  // namespace hypnos::nn

template <>
struct hypnos::config::EnumNames<hypnos::nn::MlpKind> {
  static constexpr std::array<std::string_view, 2> names{"gelu", "swiglu"};
};

// The backend enum belongs to ops/, whose header does not name it for configs; the model is the
// first config section that holds one, so its YAML names are declared here.
template <>
struct hypnos::config::EnumNames<hypnos::ops::GdnBackend> {
  static constexpr std::array<std::string_view, 4> names{"auto", "reference", "chunked", "cuda"};
};
