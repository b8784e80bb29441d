// Test helpers: tiny double-precision HybridLMs and Rule 110-shaped batches, seeded explicitly.
#pragma once
#include <torch/torch.h>

#include <string>

#include "hypnos/nn/hybrid_lm.h"

namespace hypnos::testing {

/// A tiny HybridLM in double (width 16, 2 heads, vocab 8) with deterministic weights. The decay
/// gates are pushed away from the init (A_log near 0) so that S carries information over windows.
inline nn::HybridLM tiny_model(const std::string& pattern, uint64_t seed, int64_t vocab = 8,
                               nn::MlpKind mlp = nn::MlpKind::kGelu) {
  torch::manual_seed(seed);  // LibTorch module initialisers draw from the default generator
  nn::ModelOptions o;
  o.vocab_size = vocab;
  o.d_model = 16;
  o.n_heads = 2;
  o.pattern = pattern;
  o.mlp = mlp;
  nn::HybridLM model(o);
  model->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (p.key().find("A_log") != std::string::npos) p.value().uniform_(-3.0, -1.0);
  }
  return model;
}

/// Rule 110 layout (docs/tasks.md): 4 strings of 24 random bits (ids 0/1), then query ids 2..5; T =
/// 100.
inline at::Tensor rule110_tokens(int64_t batch, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor bits = at::randint(0, 2, {batch, 96}, gen, at::TensorOptions().dtype(at::kLong));
  at::Tensor queries = at::arange(2, 6, at::TensorOptions().dtype(at::kLong)).expand({batch, 4});
  return at::cat({bits, queries}, 1);
}

/// Loss only at the 4 query positions of the Rule 110 layout.
inline at::Tensor rule110_loss_mask(int64_t batch) {
  at::Tensor mask = at::zeros({batch, 100}, at::TensorOptions().dtype(at::kBool));
  mask.narrow(1, 96, 4).fill_(true);
  return mask;
}

}  // namespace hypnos::testing
