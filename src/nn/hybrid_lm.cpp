// HybridLM and ModelOptions validation.
#include "hypnos/nn/hybrid_lm.h"

namespace hypnos::nn {

void ModelOptions::validate() const {
  auto fail = [](const std::string& key, const std::string& value, const std::string& expected) {
    throw std::invalid_argument("model." + key + " = " + value + ": expected " + expected);
  };
  if (vocab_size < 1) fail("vocab_size", std::to_string(vocab_size), "a positive vocabulary size");
  if (n_heads < 1) fail("n_heads", std::to_string(n_heads), ">= 1");
  if (d_model < 1 || d_model % n_heads != 0) {
    fail("d_model", std::to_string(d_model),
         "a positive multiple of n_heads (" + std::to_string(n_heads) + ")");
  }
  if ((d_model / n_heads) % 2 != 0 && pattern.find('A') != std::string::npos) {
    fail("d_model", std::to_string(d_model), "d_model / n_heads even (RoPE rotates pairs)");
  }
  if (pattern.empty() || pattern.find_first_not_of("AGJ") != std::string::npos) {
    fail("pattern", "'" + pattern + "'",
         "a non-empty string of A (attention), G (GatedDeltaNet), J (JetBlock)");
  }
  if (head_dim_k < 0)
    fail("head_dim_k", std::to_string(head_dim_k), ">= 0 (0 = d_model / n_heads)");
  if (head_dim_v < 0)
    fail("head_dim_v", std::to_string(head_dim_v), ">= 0 (0 = d_model / n_heads)");
  if (mlp_ratio < 1) fail("mlp_ratio", std::to_string(mlp_ratio), ">= 1");
  if (conv_size < 1) fail("conv_size", std::to_string(conv_size), ">= 1");
  if (!(norm_eps >= 0)) fail("norm_eps", std::to_string(norm_eps), ">= 0");
}

HybridLMImpl::HybridLMImpl(ModelOptions options_) : options(std::move(options_)) {
  options.validate();
  reset();
}

void HybridLMImpl::reset() {
  const int64_t D = options.d_model;
  embed_tokens = register_module("embed", torch::nn::Embedding(options.vocab_size, D));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (char kind : options.pattern) blocks->push_back(Block(BlockOptions(options, kind)));
  norm = register_module("norm", RMSNorm(RMSNormOptions(D).eps(options.norm_eps)));
  lm_head = register_module(
      "lm_head", torch::nn::Linear(torch::nn::LinearOptions(D, options.vocab_size).bias(false)));
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
  return {x, std::move(written)};
}

at::Tensor HybridLMImpl::logits(const at::Tensor& h) {
  return lm_head(norm(h));
}

at::Tensor HybridLMImpl::forward(const at::Tensor& tokens) {
  return logits(
      forward_blocks(embed(tokens), memory::ModelMemory::empty(n_layers()), 0, n_layers()).first);
}

}  // namespace hypnos::nn
