// Parity with the executable reference of the pretrained families
// (bench/reference/pretrained_reference.py): tiny random Jet-Nemotron, Ouro and Ouro + JetBlock
// checkpoints written by the reference at test time (single file, two shards, bf16), loaded by
// hypnos, and their logits compared, CPU fp32: the plain forward, and the sleep window loop with
// hard eviction at N in {1, 2, 3} (Jet-Nemotron over a partial loop range and the full range, Ouro
// over the whole stack). Every window's wake logits count. And hypnos's export, reloaded by the
// reference, gives the reference's logits bit for bit.
//
// Positions: the reference's sleep loop numbers tokens absolutely (window c starts at c * L);
// hypnos restarts them at 0 in every window. RoPE is relative, so the two agree up to rounding;
// the test compares against both the reference's default and its --window-positions.
// And an all-attention Jet-Nemotron against transformers' own Qwen2ForCausalLM.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "hypnos/io/safetensors.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/sleep/window_loop.h"
#include "io/scratch_dir.h"
#include "testing/numeric.h"
#include "testing/paths.h"

namespace hypnos::nn {
namespace {

struct Case {
  std::string name;      // output file stem
  std::string ckpt;      // "single" | "sharded" | "bf16"
  int64_t passes = 0;    // 0: the plain forward
  int64_t a = 0, b = 0;  // loop range
  bool window_positions = false;
};

/// Writes tiny checkpoints of `kind` with the reference (single file, two shards, bf16), runs the
/// reference's --logits for every case, loads each checkpoint into hypnos and compares the logits.
void expect_parity(const std::string& kind, const std::string& pattern,
                   const std::vector<Case>& cases) {
  const std::string python = hypnos::testing::python();
  if (python.empty() || !std::filesystem::exists(python)) GTEST_SKIP() << "no HYPNOS_PYTHON";
  const std::string ref =
      std::string(hypnos::testing::source_dir()) + "/bench/reference/pretrained_reference.py";
  io::testing::ScratchDir dir;
  const auto d = dir.path();
  ASSERT_EQ(std::system((python + " -c 'import safetensors' 2>/dev/null").c_str()), 0)
      << python << " lacks the safetensors package: rerun scripts/setup.sh";

  // Two sequences of 29 tokens; windows of L = 10 (10, 10, 9 tokens: Jet-Nemotron's SWA window
  // of 8 is tighter than a window, and the last window is short).
  torch::manual_seed(7);
  const at::Tensor tokens = torch::randint(0, 256, {2, 29}, torch::kLong);
  {
    std::ofstream out(d / "tokens.txt");
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t t = 0; t < 29; ++t) out << tokens[b][t].item<int64_t>() << (t < 28 ? " " : "\n");
    }
  }
  const int64_t L = 10;
  // The reference's own command lines, run in one Python process (tests/python/reference_runs.py).
  std::string lines = "--make-tiny " + kind + " " + (d / "single").string() + "\n" +
                      "--make-tiny " + kind + " " + (d / "sharded").string() + " --shards 2\n" +
                      "--make-tiny " + kind + " " + (d / "bf16").string() + " --ckpt-dtype bf16\n";
  for (const Case& c : cases) {
    lines += "--logits " + (d / c.ckpt).string() + " " + (d / "tokens.txt").string() + " " +
             (d / (c.name + ".safetensors")).string();
    if (c.passes > 0) {
      lines += " --sleep " + std::to_string(c.passes) + " --window " + std::to_string(L);
      if (c.b > 0) lines += " --loop " + std::to_string(c.a) + "," + std::to_string(c.b);
      if (c.window_positions) lines += " --window-positions";
    }
    lines += "\n";
  }
  std::ofstream(d / "runs.txt") << lines;
  const std::string cmd = python + " " + hypnos::testing::source_dir() +
                          "/tests/python/reference_runs.py " + ref + " " +
                          (d / "runs.txt").string() + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  std::map<std::string, PretrainedModel> models;
  for (const char* ckpt : {"single", "sharded", "bf16"}) {
    models.emplace(ckpt, load_pretrained(d / ckpt, at::kFloat));
    EXPECT_TRUE(models.at(ckpt).report.ok()) << models.at(ckpt).report.text();
    EXPECT_EQ(models.at(ckpt).config.options.pattern, pattern);
  }
  // The sharded checkpoint holds the single file's weights.
  auto single = models.at("single").model->named_parameters();
  for (const auto& p : models.at("sharded").model->named_parameters()) {
    EXPECT_TRUE(at::equal(p.value(), single[p.key()])) << p.key();
  }
  std::printf("%s\n", models.at("sharded").report.text().c_str());

  // Export -> the reference reloads it (the upstream layout) -> the same logits, bit for bit.
  save_hf_checkpoint(models.at("single").model, d / "exported", models.at("single").config.json, 2);
  std::ofstream(d / "export_runs.txt") << "--logits " + (d / "exported").string() + " " +
                                              (d / "tokens.txt").string() + " " +
                                              (d / "exported.safetensors").string() + "\n";
  const std::string again = python + " " + hypnos::testing::source_dir() +
                            "/tests/python/reference_runs.py " + ref + " " +
                            (d / "export_runs.txt").string() + " >/dev/null";
  ASSERT_EQ(std::system(again.c_str()), 0) << again;
  EXPECT_TRUE(at::equal(io::load_safetensors(d / "exported.safetensors").at("logits"),
                        io::load_safetensors(d / "plain.safetensors").at("logits")))
      << "the reference computes other logits from hypnos's export";

  torch::NoGradGuard no_grad;
  for (const Case& c : cases) {
    HybridLM& m = models.at(c.ckpt).model;
    at::Tensor logits;
    if (c.passes == 0) {
      logits = m->forward(tokens);
    } else {
      sleep::SleepOptions o;
      o.n_passes = c.passes;
      o.window = L;
      if (c.b > 0) o.loop_layers = {c.a, c.b};
      o.eviction = memory::Eviction::kHard;
      logits =
          sleep::run_windows(m, tokens, at::Tensor(), memory::ModelMemory::empty(m->n_layers()), o)
              .logits;
    }
    const auto ref_out = io::load_safetensors(d / (c.name + ".safetensors"));
    const at::Tensor& want = ref_out.at("logits");
    ASSERT_EQ(logits.sizes(), want.sizes()) << c.name;
    const double err = testing::relative_error(logits, want);
    const std::string loop =
        c.b > 0 ? ", loop [" + std::to_string(c.a) + ", " + std::to_string(c.b) + ")" : "";
    const std::string what = c.passes ? ", N=" + std::to_string(c.passes) + loop : "";
    std::printf("[ parity ] %s %-22s (%s checkpoint%s): relative error %.3g\n", kind.c_str(),
                c.name.c_str(), c.ckpt.c_str(), what.c_str(), err);
    EXPECT_LE(err, 1e-5) << c.name;
  }
}

}  // namespace

TEST(PretrainedParity, JetNemotronLogitsMatchTheReferencePlainAndSleeping) {
  expect_parity("jet_nemotron", "JJASJJ",
                {
                    {"plain", "single"},
                    {"plain_sharded", "sharded"},
                    {"plain_bf16", "bf16"},
                    {"n1", "single", 1, 1, 5},
                    {"n2", "single", 2, 1, 5},
                    {"n3", "single", 3, 1, 5},
                    {"n3_sharded", "sharded", 3, 1, 5},
                    {"n2_full", "single", 2, 0, 6},
                    {"n3_window_positions", "single", 3, 1, 5, true},
                });
}

// Ouro: the ordinary forward loops total_ut_steps times (3), each pass with its own memory and
// closed by the final norm; under sleep every pass runs the whole stack plus the final norm.
TEST(PretrainedParity, OuroLogitsMatchTheReferencePlainAndSleeping) {
  expect_parity("ouro", "AAA",
                {
                    {"plain", "single"},
                    {"plain_sharded", "sharded"},
                    {"plain_bf16", "bf16"},
                    {"n1", "single", 1},
                    {"n2", "single", 2},
                    {"n3", "single", 3},
                    {"n3_sharded", "sharded", 3},
                });
}

// Ouro with JetBlocks (no MLP) inserted after layers 1 and 3: 2 loops in the ordinary forward.
TEST(PretrainedParity, OuroWithInsertedJetBlocksLogitsMatchTheReference) {
  expect_parity("ouro_jet", "AAAA",
                {
                    {"plain", "single"},
                    {"plain_sharded", "sharded"},
                    {"plain_bf16", "bf16"},
                    {"n1", "single", 1},
                    {"n2", "single", 2},
                    {"n3", "single", 3},
                    {"n3_sharded", "sharded", 3},
                    {"n2_window_positions", "single", 2, 0, 0, true},
                });
}

// A Jet-Nemotron whose layers are all `attn` is the Qwen2 decoder: transformers' own
// Qwen2ForCausalLM (eager, fp32; tests/python/qwen2_logits.py maps config.json to a Qwen2Config and
// requires the checkpoint's names to be its parameter names) on the same weights, single file and
// two shards, gives hypnos's plain-forward logits.
TEST(PretrainedParity, AllAttentionJetNemotronMatchesTransformersQwen2) {
  const std::string python = hypnos::testing::python();
  if (python.empty() || !std::filesystem::exists(python)) GTEST_SKIP() << "no HYPNOS_PYTHON";
  ASSERT_EQ(std::system((python + " -c 'import safetensors, transformers' 2>/dev/null").c_str()), 0)
      << python << " lacks safetensors or transformers: rerun scripts/setup.sh";
  const std::string src = hypnos::testing::source_dir();
  io::testing::ScratchDir dir;
  const auto d = dir.path();
  torch::manual_seed(11);
  const at::Tensor tokens = torch::randint(0, 256, {2, 29}, torch::kLong);
  {
    std::ofstream out(d / "tokens.txt");
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t t = 0; t < 29; ++t) out << tokens[b][t].item<int64_t>() << (t < 28 ? " " : "\n");
    }
  }
  std::ofstream(d / "runs.txt") << "--make-tiny jet_nemotron_attn " + (d / "single").string() +
                                       "\n--make-tiny jet_nemotron_attn " +
                                       (d / "sharded").string() + " --shards 2\n";
  const std::string make = python + " " + src + "/tests/python/reference_runs.py " + src +
                           "/bench/reference/pretrained_reference.py " + (d / "runs.txt").string() +
                           " >/dev/null";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  torch::NoGradGuard no_grad;
  for (const char* ckpt : {"single", "sharded"}) {
    const std::string out = (d / (std::string(ckpt) + "_qwen2.safetensors")).string();
    const std::string run = python + " " + src + "/tests/python/qwen2_logits.py " +
                            (d / ckpt).string() + " " + (d / "tokens.txt").string() + " " + out +
                            " >/dev/null";
    ASSERT_EQ(std::system(run.c_str()), 0) << run;
    PretrainedModel m = load_pretrained(d / ckpt, at::kFloat);
    ASSERT_TRUE(m.report.ok()) << m.report.text();
    EXPECT_EQ(m.config.options.pattern, "AAAAAA");
    const at::Tensor want = io::load_safetensors(out).at("logits");
    const at::Tensor logits = m.model->forward(tokens);
    ASSERT_EQ(logits.sizes(), want.sizes());
    const double err = testing::relative_error(logits, want);
    std::printf(
        "[ parity ] all-attn jet_nemotron vs transformers Qwen2ForCausalLM (%s): relative "
        "error %.3g\n",
        ckpt, err);
    EXPECT_LE(err, 1e-5) << ckpt;
  }
}

}  // namespace hypnos::nn
