// save_weights / load_weights: a round trip restores every parameter bit for bit; a file of another
// dtype, or lacking a tensor, is refused before anything is copied.
#include "hypnos/nn/weights.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/io/safetensors.h"
#include "io/scratch_dir.h"

namespace hypnos::nn {
namespace {

ModelOptions tiny() {
  ModelOptions o;
  o.vocab_size = 11;
  o.d_model = 16;
  o.n_heads = 2;
  o.pattern = "AG";
  return o;
}

TEST(Weights, RoundTripRestoresEveryParameter) {
  io::testing::ScratchDir dir;
  torch::manual_seed(1);
  HybridLM a(tiny());
  save_weights(a, dir.path() / "w.safetensors");
  torch::manual_seed(2);
  HybridLM b(tiny());
  load_weights(b, dir.path() / "w.safetensors");
  EXPECT_EQ(weights_sha256(a), weights_sha256(b));
}

TEST(Weights, AnotherDtypeIsRefusedNotCast) {
  io::testing::ScratchDir dir;
  HybridLM a(tiny());
  save_weights(a, dir.path() / "w.safetensors");
  HybridLM b(tiny());
  b->to(at::kDouble);
  const std::string before = weights_sha256(b);
  try {
    load_weights(b, dir.path() / "w.safetensors");
    ADD_FAILURE() << "fp32 weights were loaded into an fp64 model";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is stored as F32, the model's is F64 (never cast"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(weights_sha256(b), before) << "a refused load changed the model";

  io::NamedTensors partial;  // every parameter but the first
  for (const auto& p : a->named_parameters()) partial.emplace_back(p.key(), p.value().detach());
  const std::string dropped = partial.front().first;
  partial.erase(partial.begin());
  io::save_safetensors(dir.path() / "partial.safetensors", partial);
  try {
    load_weights(a, dir.path() / "partial.safetensors");
    ADD_FAILURE() << "a file lacking a tensor was loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor '" + dropped + "'"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace hypnos::nn
