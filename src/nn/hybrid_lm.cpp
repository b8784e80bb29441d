// HybridLM and ModelOptions validation.
#include "hypnos/nn/hybrid_lm.h"

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
  if (head_dim_k < 0)
    fail("head_dim_k", std::to_string(head_dim_k), ">= 0 (0 = d_model / n_heads)");
  if (head_dim_v < 0)
    fail("head_dim_v", std::to_string(head_dim_v), ">= 0 (0 = d_model / n_heads)");
  if (mlp_ratio < 1) fail("mlp_ratio", std::to_string(mlp_ratio), ">= 1");
  if (conv_size < 1) fail("conv_size", std::to_string(conv_size), ">= 1");
  if (!(norm_eps >= 0)) fail("norm_eps", std::to_string(norm_eps), ">= 0");
}

DecoderImpl::DecoderImpl(ModelOptions options_) : options(std::move(options_)) {
  reset();
}

void DecoderImpl::reset() {
  embed_tokens =
      register_module("embed_tokens", torch::nn::Embedding(options.vocab_size, options.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (char kind : options.pattern) layers->push_back(Block(BlockOptions(options, kind)));
  norm = register_module("norm", RMSNorm(RMSNormOptions(options.d_model).eps(options.norm_eps)));
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
    for (char kind : options.pattern) blocks->push_back(Block(BlockOptions(options, kind)));
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
  blocks = decoder->layers;
  norm = decoder->norm;
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
  return {x, std::move(written)};
}

at::Tensor HybridLMImpl::logits(const at::Tensor& h) {
  return at::linear(norm(h), head_weight());
}

at::Tensor HybridLMImpl::forward(const at::Tensor& tokens) {
  return logits(
      forward_blocks(embed(tokens), memory::ModelMemory::empty(n_layers()), 0, n_layers()).first);
}

}  // namespace hypnos::nn
