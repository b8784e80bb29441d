// Checkpoints (RELIABILITY.md R5-R7 at the library level): a save/load round trip continues
// bitwise, corrupt checkpoints are refused with "checksum mismatch: <file>" and skipped, a save
// killed before its commit is never listed and is removed by the next save, and only the newest
// `keep` remain.
#include "hypnos/train/checkpoint.h"

#include <gtest/gtest.h>

#include "hypnos/io/manifest.h"
#include "io/scratch_dir.h"
#include "nn/tiny_model.h"

namespace hypnos::train {
namespace {

namespace fs = std::filesystem;
using io::testing::read_all;
using io::testing::ScratchDir;
using io::testing::write_all;

// One update from a loss that touches every parameter, so both optimizers hold state.
void train_once(nn::HybridLM& model, Optimizer& optimizer) {
  optimizer.zero_grad();
  at::Tensor loss = at::zeros({}, at::kDouble);
  for (const auto& p : model->parameters()) loss = loss + (p * p).sum() + p.sum();
  loss.backward();
  optimizer.clip_gradients();
  optimizer.step();
}

struct Trained {
  nn::HybridLM model{nullptr};
  std::unique_ptr<Optimizer> optimizer;
};

Trained make_trained(uint64_t seed, int updates) {
  Trained t{testing::tiny_model("AG", seed), nullptr};
  t.optimizer = std::make_unique<Optimizer>(split_parameters(*t.model), OptimizerOptions{});
  for (int i = 0; i < updates; ++i) train_once(t.model, *t.optimizer);
  return t;
}

void expect_bitwise_equal(nn::HybridLM& a, nn::HybridLM& b) {
  const auto pa = a->named_parameters();
  const auto pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(at::equal(pa[i].value(), pb[i].value())) << pa[i].key();
  }
}

TrainingState state_at(int64_t step) {
  return {step, step * 100, 0, 0.5 * step};
}

void flip_byte(const fs::path& file, size_t offset) {
  std::string bytes = read_all(file);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(~bytes[offset]);
  write_all(file, bytes);
}

struct Problem {
  fs::path dir;
  std::string message;
};

TEST(Checkpoint, RoundTripRestoresWeightsStateAndContinuesBitwise) {
  ScratchDir run;
  Trained a = make_trained(/*seed=*/1, /*updates=*/2);
  save_checkpoint(run.path(), state_at(2), a.model, *a.optimizer, "yaml: 1\n", /*keep=*/3);

  Trained b = make_trained(/*seed=*/2, /*updates=*/0);  // other weights, empty optimizer state
  std::vector<Problem> problems;
  const auto state = load_latest_checkpoint(run.path(), b.model, b.optimizer.get(),
                                            [&](const fs::path& d, const std::string& m) {
                                              problems.push_back({d, m});
                                            });
  ASSERT_TRUE(state.has_value());
  EXPECT_TRUE(problems.empty());
  EXPECT_EQ(state->step, 2);
  EXPECT_EQ(state->tokens, 200);
  EXPECT_EQ(state->elapsed_s, 1.0);
  expect_bitwise_equal(a.model, b.model);
  // Moments and momentum came back too: the next update is the same on both.
  train_once(a.model, *a.optimizer);
  train_once(b.model, *b.optimizer);
  expect_bitwise_equal(a.model, b.model);
}

// A checkpoint whose bytes verify but which does not fit (saved from an AG model, loaded into AA:
// every attention tensor name of AA exists there with its shape, the optimizer's split does not)
// is refused without touching the model: nothing is copied before everything is checked.
TEST(Checkpoint, ARefusedCheckpointLeavesTheModelAsItWas) {
  ScratchDir run;
  Trained a = make_trained(3, 1);
  save_checkpoint(run.path(), state_at(5), a.model, *a.optimizer, "", /*keep=*/3);
  Trained b{testing::tiny_model("AA", 4), nullptr};
  b.optimizer = std::make_unique<Optimizer>(split_parameters(*b.model), OptimizerOptions{});
  Trained before{testing::tiny_model("AA", 4), nullptr};
  std::vector<std::string> problems;
  const auto state = load_latest_checkpoint(
      run.path(), b.model, b.optimizer.get(),
      [&](const fs::path&, const std::string& problem) { problems.push_back(problem); });
  EXPECT_FALSE(state.has_value());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("Optimizer::load"), std::string::npos) << problems[0];
  expect_bitwise_equal(b.model, before.model);
}

TEST(Checkpoint, FlippedByteAndTruncatedFileAreRefusedAndSkipped) {
  ScratchDir run;
  Trained a = make_trained(/*seed=*/1, /*updates=*/1);
  save_checkpoint(run.path(), state_at(10), a.model, *a.optimizer, "", /*keep=*/3);
  const auto weights10 = read_all(run / "checkpoints/step_00000010/model.safetensors");
  train_once(a.model, *a.optimizer);
  save_checkpoint(run.path(), state_at(20), a.model, *a.optimizer, "", /*keep=*/3);
  train_once(a.model, *a.optimizer);
  save_checkpoint(run.path(), state_at(30), a.model, *a.optimizer, "", /*keep=*/3);

  const fs::path weights30 = run / "checkpoints/step_00000030/model.safetensors";
  flip_byte(weights30, read_all(weights30).size() / 2);  // inside a tensor: would load silently
  const fs::path optimizer20 = run / "checkpoints/step_00000020/optimizer.pt";
  fs::resize_file(optimizer20, fs::file_size(optimizer20) / 2);

  Trained b = make_trained(/*seed=*/2, /*updates=*/0);
  std::vector<Problem> problems;
  const auto state = load_latest_checkpoint(run.path(), b.model, b.optimizer.get(),
                                            [&](const fs::path& d, const std::string& m) {
                                              problems.push_back({d, m});
                                            });
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 10);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].dir.filename().string(), "step_00000030");
  EXPECT_EQ(problems[0].message, "checksum mismatch: " + weights30.string());
  EXPECT_EQ(problems[1].dir.filename().string(), "step_00000020");
  EXPECT_EQ(problems[1].message, "checksum mismatch: " + optimizer20.string());

  save_checkpoint(run.path(), state_at(10), b.model, *b.optimizer, "", /*keep=*/3);
  EXPECT_EQ(read_all(run / "checkpoints/step_00000010/model.safetensors"), weights10)
      << "the weights loaded from checkpoint 10 are not the ones saved there";
}

TEST(Checkpoint, OnlyStepSelectsOneCheckpointAndNoneValidGivesNullopt) {
  ScratchDir run;
  Trained a = make_trained(/*seed=*/1, /*updates=*/1);
  save_checkpoint(run.path(), state_at(10), a.model, *a.optimizer, "", /*keep=*/3);
  save_checkpoint(run.path(), state_at(20), a.model, *a.optimizer, "", /*keep=*/3);
  Trained b = make_trained(/*seed=*/2, /*updates=*/0);
  int problems = 0;
  auto count = [&](const fs::path&, const std::string&) { ++problems; };
  auto state = load_latest_checkpoint(run.path(), b.model, nullptr, count, /*only_step=*/10);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 10);

  flip_byte(run / "checkpoints/step_00000010/manifest.json", 5);
  flip_byte(run / "checkpoints/step_00000020/trainer_state.json", 3);
  EXPECT_FALSE(load_latest_checkpoint(run.path(), b.model, nullptr, count).has_value());
  EXPECT_EQ(problems, 2);
}

TEST(Checkpoint, KilledSaveIsNeverListedAndTheNextSaveRemovesIt) {
  ScratchDir run;
  Trained a = make_trained(/*seed=*/1, /*updates=*/1);
  save_checkpoint(run.path(), state_at(10), a.model, *a.optimizer, "", /*keep=*/3);
  // What a save killed before its commit leaves: a complete staging directory of a dead process.
  // Pid 2^22 + 1 is above the kernel's pid_max limit, so it is never alive.
  const fs::path leftover = run / "checkpoints/step_00000020.tmp-4194305";
  fs::create_directories(leftover);
  for (const auto& f : fs::directory_iterator(run / "checkpoints/step_00000010")) {
    fs::copy_file(f.path(), leftover / f.path().filename());
  }
  ASSERT_EQ(list_checkpoints(run.path()).size(), 1u);
  Trained b = make_trained(/*seed=*/2, /*updates=*/0);
  const auto state = load_latest_checkpoint(
      run.path(), b.model, nullptr,
      [](const fs::path& d, const std::string& m) { ADD_FAILURE() << d << ": " << m; });
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 10);

  save_checkpoint(run.path(), state_at(20), a.model, *a.optimizer, "", /*keep=*/3);
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_EQ(list_checkpoints(run.path()).size(), 2u);
}

TEST(Checkpoint, SavingOverACorruptCheckpointReplacesItAndKeepsTheNewest) {
  ScratchDir run;
  Trained a = make_trained(/*seed=*/1, /*updates=*/1);
  for (int64_t s : {10, 20, 30}) {
    save_checkpoint(run.path(), state_at(s), a.model, *a.optimizer, "", /*keep=*/3);
  }
  const fs::path weights20 = run / "checkpoints/step_00000020/model.safetensors";
  flip_byte(weights20, 100);
  ASSERT_TRUE(io::find_manifest_problem(weights20.parent_path()).has_value());
  save_checkpoint(run.path(), state_at(20), a.model, *a.optimizer, "", /*keep=*/3);
  EXPECT_FALSE(io::find_manifest_problem(weights20.parent_path()).has_value());

  save_checkpoint(run.path(), state_at(40), a.model, *a.optimizer, "", /*keep=*/2);
  const auto left = list_checkpoints(run.path());
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].filename().string(), "step_00000040");
  EXPECT_EQ(left[1].filename().string(), "step_00000030");
}

}  // namespace
}  // namespace hypnos::train
