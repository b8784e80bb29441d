// Parity with the executable reference model (bench/reference/sleep_reference.py, run by
// tests/python/sleep_parity.py): same weights, same Rule 110 batch, N in {1, 2, 3}, fp32 on CPU.
// Every window's wake logits are compared, those of the four windows that sleep included.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hypnos/io/safetensors.h"
#include "hypnos/sleep/window_loop.h"
#include "nn/tiny_model.h"
#include "testing/paths.h"

namespace hypnos::sleep {

TEST(SleepParity, EveryWindowsLogitsMatchTheReferenceModelForOneTwoAndThreePasses) {
  const std::string python = hypnos::testing::python();
  if (python.empty() || !std::filesystem::exists(python)) GTEST_SKIP() << "no HYPNOS_PYTHON";
  const std::string script =
      std::string(hypnos::testing::source_dir()) + "/tests/python/sleep_parity.py";
  torch::manual_seed(40);
  nn::ModelOptions mo;
  mo.vocab_size = 6;
  mo.d_model = 64;
  mo.n_heads = 4;
  mo.pattern = "AGAG";
  nn::HybridLM m(mo);
  {  // move the decay gates into the range where S carries information across windows
    torch::NoGradGuard no_grad;
    for (auto& p : m->named_parameters()) {
      if (p.key().find("A_log") != std::string::npos) p.value().uniform_(-3.0, -1.0);
    }
  }
  const auto tokens = testing::rule110_tokens(4, 41);
  const auto dir = std::filesystem::temp_directory_path();
  const std::string stem = (dir / ("hypnos_parity_" + std::to_string(::getpid()))).string();
  const std::vector<int64_t> passes{1, 2, 3};
  std::string cmd = python + " " + script;
  for (int64_t n : passes) {  // one file per N, then one Python run for all (torch imports slowly)
    SleepOptions o;
    o.n_passes = n;
    at::Tensor logits;
    {
      torch::NoGradGuard no_grad;
      logits = run_windows(m, tokens, at::Tensor(), memory::ModelMemory::empty(4), o).logits;
    }
    io::NamedTensors tensors;
    for (const auto& p : m->named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
    tensors.emplace_back("tokens", tokens);
    tensors.emplace_back("logits", logits);
    const std::string in = stem + "_" + std::to_string(n) + ".safetensors";
    io::save_safetensors(in, tensors,
                         {{"pattern", mo.pattern},
                          {"n_heads", std::to_string(mo.n_heads)},
                          {"window", "24"},
                          {"passes", std::to_string(n)}});
    cmd += " " + in + " " + stem + "_" + std::to_string(n) + ".json";
  }
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (int64_t n : passes) {
    const std::string out = stem + "_" + std::to_string(n) + ".json";
    std::stringstream json;
    json << std::ifstream(out).rdbuf();
    const std::string text = json.str();
    const auto at = text.find("\"rel_err\": ");
    ASSERT_NE(at, std::string::npos) << text;
    const double rel_err = std::stod(text.substr(at + 11));
    std::printf("[ parity ] N=%ld: relative error %.3g vs sleep_reference.py\n",
                static_cast<long>(n), rel_err);
    EXPECT_LE(rel_err, 1e-5) << text;
    ::unlink(out.c_str());
    ::unlink((stem + "_" + std::to_string(n) + ".safetensors").c_str());
  }
}

}  // namespace hypnos::sleep
