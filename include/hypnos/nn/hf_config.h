// A pretrained family's config.json (Hugging Face layout) read into ModelOptions: the families are
// configurations of HybridLM's modules, not model classes of their own.
//
// Jet-Nemotron (model_type jet_nemotron): layer_types jet / attn / swa become the pattern letters
// J / A / S; attention has q/k/v biases, grouped-query heads and rotate-half RoPE; the SwiGLU MLP
// has intermediate_size; efficient_attention_config.jet gives the JetBlock's heads, head_dim (K),
// expand_v (V = int(K * expand_v)), conv_size, dconv_generator_reduction and its own output-norm
// eps (norm_eps, a string in the released config); efficient_attention_config.swa.window_size the
// sliding window; tie_word_embeddings ties the head to the embedding.
//
// Ouro (model_type ouro): full-attention sandwich layers (four norms, no biases), the final norm
// after every loop (loop_norm), total_ut_steps loops in the ordinary forward, the early-exit gate
// kept and unused; jet_layers_after (with efficient_attention_config.jet) inserts JetBlocks without
// MLP after those layers, named model.jet_layers.<k>.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "hypnos/nn/model_options.h"

namespace hypnos::nn {

/// What a checkpoint directory's config.json says, as hypnos uses it.
struct HfConfig {
  /// config.json's model_type ("jet_nemotron").
  std::string family;
  /// The architecture: names = hf, every key from config.json, gdn_backend left at its default.
  ModelOptions options;
  /// Checkpoint keys the family allows the weights to lack: a tied lm_head.weight; and for Ouro
  /// with inserted JetBlocks every key under model.jet_layers. (a stock Ouro checkpoint into which
  /// they are being inserted), listed as that prefix.
  std::vector<std::string> optional_keys;
  /// config.json verbatim (written back unchanged by save_hf_checkpoint).
  std::string json;
};

/// Parses the text of a config.json; `source` names it in errors. Throws std::invalid_argument
/// naming the source, the field and what was expected for a missing or wrong field, an unknown
/// model_type or a feature hypnos does not implement (rope_scaling, another activation).
HfConfig parse_hf_config(const std::string& json, const std::string& source = "config.json");

/// Reads `dir`/config.json (std::runtime_error when it cannot be read).
HfConfig read_hf_config(const std::filesystem::path& dir);

/// The config.json that describes `model` when its weights are saved in the Hugging Face layout:
/// `source_json` (the config.json the model was built from) verbatim when it describes the same
/// inserted JetBlocks; for an Ouro model into which a run inserted JetBlocks
/// (model.inserted_jet_after, absent from the source), the source with jet_layers_after and
/// efficient_attention_config.jet (num_heads, head_dim, expand_v, conv_size,
/// dconv_generator_reduction, norm_eps) added in the form parse_hf_config reads, so that loading
/// the export builds the same model. Throws std::invalid_argument when the source inserts other
/// JetBlocks than the model (it describes another model).
std::string hf_config_json(const std::string& source_json, const ModelOptions& model);

/// The model of a run whose model.from names a checkpoint directory: every architecture key from
/// its config.json, and the run's own from and gdn_backend. One addition is the run's to make: into
/// an Ouro checkpoint that inserts no JetBlocks, the run's model.inserted_jet_after inserts them,
/// with the run's JetBlock keys (ssm_heads, head_dim_k, head_dim_v, conv_size,
/// generator_reduction, ssm_norm_eps); they start as no-ops (o_proj zeroed, load_hf_weights).
/// Throws std::invalid_argument for a config error (inserted_jet_after on another family, or other
/// than config.json's jet_layers_after), std::runtime_error when config.json cannot be read.
ModelOptions pretrained_run_options(const ModelOptions& run);

}  // namespace hypnos::nn
