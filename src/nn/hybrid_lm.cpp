// HybridLM and ModelOptions validation.
#include "hypnos/nn/hybrid_lm.h"

#include <algorithm>

namespace hypnos::nn {

void ModelOptions::validate() const {
  auto fail = [](const std::string& key, const std::string& value, const std::string& expected) {
    throw std::invalid_argument("model." + key + " = " + value + ": expected " + expected);
  };
  if (vocab_size < 1) fail("vocab_size", std::to_string(vocab_size), "a positive vocabulary size");
  if (n_heads < 1) fail("n_heads", std::to_string(n_heads), ">= 1");
  if (head_dim < 0) fail("head_dim", std::to_string(head_dim), ">= 0 (0 = d_model / n_heads)");
  if (ssm_heads < 0) fail("ssm_heads", std::to_string(ssm_heads), ">= 0 (0 = n_heads)");
  const bool has_attention = pattern.find_first_of("AS") != std::string::npos;
  const bool has_ssm = pattern.find_first_of("GJ") != std::string::npos;
  if (d_model < 1 || (head_dim == 0 && has_attention && d_model % n_heads != 0)) {
    fail("d_model", std::to_string(d_model),
         "a positive multiple of n_heads (" + std::to_string(n_heads) + ")");
  }
  if (has_ssm && (head_dim_k == 0 || head_dim_v == 0) && d_model % resolved_ssm_heads() != 0) {
    fail("d_model", std::to_string(d_model),
         "a multiple of the SSM heads (" + std::to_string(resolved_ssm_heads()) +
             ") when head_dim_k or head_dim_v is 0");
  }
  if (resolved_head_dim() % 2 != 0 && has_attention) {
    fail(head_dim > 0 ? "head_dim" : "d_model", std::to_string(head_dim > 0 ? head_dim : d_model),
         "an even attention head dim (RoPE rotates pairs)");
  }
  if (pattern.empty() || pattern.find_first_not_of("ASGJ") != std::string::npos) {
    fail("pattern", "'" + pattern + "'",
         "a non-empty string of A (attention), S (sliding-window attention), G (GatedDeltaNet), J "
         "(JetBlock)");
  }
  if (n_kv_heads < 0 || (n_kv_heads > 0 && n_heads % n_kv_heads != 0)) {
    fail("n_kv_heads", std::to_string(n_kv_heads),
         "0 or a divisor of n_heads (" + std::to_string(n_heads) + ")");
  }
  if (pattern.find('S') != std::string::npos && swa_window < 1) {
    fail("swa_window", std::to_string(swa_window), ">= 1 (the pattern has S blocks)");
  }
  if (mlp_hidden < 0) fail("mlp_hidden", std::to_string(mlp_hidden), ">= 0 (0 = from mlp_ratio)");
  if (generator_reduction < 1) {
    fail("generator_reduction", std::to_string(generator_reduction), ">= 1");
  }
  if (ut_steps < 1) fail("ut_steps", std::to_string(ut_steps), ">= 1");
  for (int64_t after : inserted_jet_after) {
    if (after < 0 || after >= static_cast<int64_t>(pattern.size())) {
      fail("inserted_jet_after", std::to_string(after),
           "block indices of the pattern, in [0, " + std::to_string(pattern.size()) + ")");
    }
  }
  if (!inserted_jet_after.empty() && (head_dim_k == 0 || head_dim_v == 0) &&
      d_model % resolved_ssm_heads() != 0) {
    fail("d_model", std::to_string(d_model), "a multiple of the SSM heads");
  }
  if (head_dim_k < 0)
    fail("head_dim_k", std::to_string(head_dim_k), ">= 0 (0 = d_model / n_heads)");
  if (head_dim_v < 0)
    fail("head_dim_v", std::to_string(head_dim_v), ">= 0 (0 = d_model / n_heads)");
  if (mlp_ratio < 1) fail("mlp_ratio", std::to_string(mlp_ratio), ">= 1");
  if (conv_size < 1) fail("conv_size", std::to_string(conv_size), ">= 1");
  if (!(norm_eps >= 0)) fail("norm_eps", std::to_string(norm_eps), ">= 0");
}

std::vector<Block> make_blocks(const ModelOptions& options) {
  std::vector<Block> blocks;
  for (size_t i = 0; i < options.pattern.size(); ++i) {
    blocks.push_back(Block(BlockOptions(options, options.pattern[i]).sandwich(options.sandwich)));
    for (int64_t after : options.inserted_jet_after) {
      if (after == static_cast<int64_t>(i))
        blocks.push_back(Block(BlockOptions(options, 'J').mlp(false)));
    }
  }
  return blocks;
}

DecoderImpl::DecoderImpl(ModelOptions options_) : options(std::move(options_)) {
  reset();
}

void DecoderImpl::reset() {
  embed_tokens =
      register_module("embed_tokens", torch::nn::Embedding(options.vocab_size, options.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  std::vector<Block> inserted;
  for (Block& b : make_blocks(options)) {
    if (b->options.mlp()) {
      layers->push_back(b);
    } else {
      inserted.push_back(b);
    }
  }
  norm = register_module("norm", RMSNorm(RMSNormOptions(options.d_model).eps(options.norm_eps)));
  if (options.exit_gate) {
    early_exit_gate = register_module("early_exit_gate", torch::nn::Linear(options.d_model, 1));
    for (auto& p : early_exit_gate->parameters()) p.requires_grad_(false);
  }
  if (!inserted.empty()) {
    // jet_layers.k is the k-th inserted block, in the order of inserted_jet_after's layers
    jet_layers = register_module("jet_layers", torch::nn::ModuleList());
    std::vector<std::pair<int64_t, size_t>> order;  // (after, k)
    for (size_t k = 0; k < options.inserted_jet_after.size(); ++k) {
      order.emplace_back(options.inserted_jet_after[k], k);
    }
    std::vector<Block> by_k(inserted.size(), Block(nullptr));
    std::stable_sort(order.begin(), order.end());
    for (size_t e = 0; e < order.size(); ++e) by_k[order[e].second] = inserted[e];
    for (Block& b : by_k) jet_layers->push_back(b);
  }
}

HybridLMImpl::HybridLMImpl(ModelOptions options_) : options(std::move(options_)) {
  options.validate();
  reset();
}

void HybridLMImpl::reset() {
  const int64_t D = options.d_model;
  if (options.names == ParameterNames::kHf) {
    decoder = register_module("model", Decoder(options));
    bind_decoder();
  } else {
    embed_tokens = register_module("embed", torch::nn::Embedding(options.vocab_size, D));
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (Block& b : make_blocks(options)) blocks->push_back(b);
    norm = register_module("norm", RMSNorm(RMSNormOptions(D).eps(options.norm_eps)));
  }
  if (!options.tie_embeddings) {
    lm_head = register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(D, options.vocab_size).bias(false)));
  }
}

std::shared_ptr<torch::nn::Module> HybridLMImpl::clone(
    const std::optional<at::Device>& device) const {
  auto copy = Cloneable<HybridLMImpl>::clone(device);
  std::dynamic_pointer_cast<HybridLMImpl>(copy)->bind_decoder();
  return copy;
}

void HybridLMImpl::bind_decoder() {
  if (!decoder) return;
  embed_tokens = decoder->embed_tokens;
  norm = decoder->norm;
  if (!decoder->jet_layers) {
    blocks = decoder->layers;
    return;
  }
  // Execution order: layers.i, then the jet_layers inserted after it (an unregistered list: the
  // parameters belong to the decoder).
  blocks = torch::nn::ModuleList();
  std::vector<std::pair<int64_t, size_t>> order;
  for (size_t k = 0; k < options.inserted_jet_after.size(); ++k) {
    order.emplace_back(options.inserted_jet_after[k], k);
  }
  std::stable_sort(order.begin(), order.end());
  size_t e = 0;
  for (size_t i = 0; i < decoder->layers->size(); ++i) {
    blocks->push_back(decoder->layers[i]);
    for (; e < order.size() && order[e].first == static_cast<int64_t>(i); ++e) {
      blocks->push_back(decoder->jet_layers[order[e].second]);
    }
  }
}

const at::Tensor& HybridLMImpl::head_weight() const {
  return lm_head ? lm_head->weight : embed_tokens->weight;
}

BlockImpl& HybridLMImpl::block(int64_t i) {
  return *blocks[static_cast<size_t>(i)]->as<BlockImpl>();
}

at::Tensor HybridLMImpl::embed(const at::Tensor& tokens) {
  return embed_tokens(tokens);
}

std::pair<at::Tensor, memory::ModelMemory> HybridLMImpl::forward_blocks(
    const at::Tensor& h, const memory::ModelMemory& memory, int64_t begin, int64_t end,
    int64_t span) {
  TORCH_CHECK(static_cast<int64_t>(memory.layers.size()) == n_layers(),
              "forward_blocks: memory has ", memory.layers.size(), " layers, the model ",
              n_layers());
  memory::ModelMemory written = memory;
  at::Tensor x = h;
  for (int64_t i = begin; i < end; ++i) {
    MixerOutput out = block(i).forward(x, memory.layers[i], span);
    x = std::move(out.y);
    written.layers[i] = std::move(out.written);
  }
  if (options.loop_norm && begin < end && end == n_layers()) x = norm(x);
  return {x, std::move(written)};
}

at::Tensor HybridLMImpl::logits(const at::Tensor& h) {
  return at::linear(options.loop_norm ? h : norm(h), head_weight());
}

at::Tensor HybridLMImpl::forward(const at::Tensor& tokens) {
  // Ouro's looped forward keeps a cache slot per (pass, block): over one window from empty memory
  // every pass starts from empty memory.
  at::Tensor h = embed(tokens);
  for (int64_t t = 0; t < options.ut_steps; ++t) {
    h = forward_blocks(h, memory::ModelMemory::empty(n_layers()), 0, n_layers()).first;
  }
  return logits(h);
}

}  // namespace hypnos::nn
