// Checkpoints (docs/reliability.md at the library level): a save/load round trip continues
// bitwise, corrupt checkpoints are refused with "checksum mismatch: <file>" and skipped, one that
// verifies but does not fit (a tensor missing, extra, of another dtype or shape) is an error and
// never skipped, non-finite weights are reported, a save killed before its commit is never listed
// and is removed by the next save, rejected checkpoints are set aside, and only the newest `keep`
// remain.
#include "hypnos/train/checkpoint.h"

#include <gtest/gtest.h>

#include "hypnos/io/manifest.h"
#include "hypnos/io/safetensors.h"
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
// is an error, not a checkpoint to skip, and leaves the model untouched: nothing is copied before
// everything is checked.
TEST(Checkpoint, AVerifiedCheckpointThatDoesNotFitThrowsAndLeavesTheModelAsItWas) {
  ScratchDir run;
  Trained a = make_trained(3, 1);
  save_checkpoint(run.path(), state_at(5), a.model, *a.optimizer, "", /*keep=*/3);
  Trained b{testing::tiny_model("AA", 4), nullptr};
  b.optimizer = std::make_unique<Optimizer>(split_parameters(*b.model), OptimizerOptions{});
  Trained before{testing::tiny_model("AA", 4), nullptr};
  std::vector<std::string> problems;
  try {
    load_latest_checkpoint(
        run.path(), b.model, b.optimizer.get(),
        [&](const fs::path&, const std::string& problem) { problems.push_back(problem); });
    ADD_FAILURE() << "a checkpoint of another model loaded";
  } catch (const CheckpointMismatch& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("step_00000005 does not fit"), std::string::npos) << message;
    EXPECT_NE(message.find("unexpected tensor"), std::string::npos) << message;
  }
  EXPECT_TRUE(problems.empty()) << "a mismatch is not corruption: " << problems[0];
  expect_bitwise_equal(b.model, before.model);
}

// Rewrites a checkpoint's model.safetensors with `edit` applied to its tensors, and its manifest,
// so that the checkpoint still verifies: what a bug, an import or a hand edit could leave.
void rewrite_weights(const fs::path& dir, const std::function<void(io::NamedTensors&)>& edit) {
  io::SafetensorsContents contents = io::load_safetensors(dir / "model.safetensors");
  edit(contents.tensors);
  io::save_safetensors(dir / "model.safetensors", contents.tensors, contents.metadata);
  io::write_manifest(dir);
  ASSERT_FALSE(io::find_manifest_problem(dir).has_value());
}

std::string mismatch_of(const fs::path& run_dir, nn::HybridLM& model) {
  try {
    load_latest_checkpoint(run_dir, model, nullptr, [](const fs::path& d, const std::string& m) {
      ADD_FAILURE() << d << ": " << m;
    });
  } catch (const CheckpointMismatch& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, WeightsOfAnotherDtypeOrAnExtraTensorAreErrorsNamingTheTensor) {
  Trained a = make_trained(1, 1);
  const std::string first = a.model->named_parameters().begin()->key();
  {  // float bytes labelled as integers (the tiny model is F64: I64, the same bytes and shape)
    ScratchDir run;
    save_checkpoint(run.path(), state_at(1), a.model, *a.optimizer, "", 3);
    rewrite_weights(run / "checkpoints/step_00000001", [&](io::NamedTensors& tensors) {
      for (auto& [name, t] : tensors) {
        if (name == first) t = t.view(at::kLong).clone();
      }
    });
    Trained b = make_trained(2, 0);
    Trained untouched = make_trained(2, 0);
    const std::string message = mismatch_of(run.path(), b.model);
    EXPECT_NE(message.find("'" + first + "' is stored as I64, the model's is F64"),
              std::string::npos)
        << message;
    expect_bitwise_equal(b.model, untouched.model);
  }
  {  // a tensor the model does not have
    ScratchDir run;
    save_checkpoint(run.path(), state_at(1), a.model, *a.optimizer, "", 3);
    rewrite_weights(run / "checkpoints/step_00000001", [](io::NamedTensors& tensors) {
      tensors.emplace_back("blocks.9.extra", at::zeros({3}));
    });
    Trained b = make_trained(2, 0);
    const std::string message = mismatch_of(run.path(), b.model);
    EXPECT_NE(message.find("unexpected tensor 'blocks.9.extra'"), std::string::npos) << message;
  }
}

TEST(Checkpoint, NonFiniteWeightsAreReportedAtLoad) {
  ScratchDir run;
  Trained a = make_trained(1, 1);
  const std::string first = a.model->named_parameters().begin()->key();
  save_checkpoint(run.path(), state_at(1), a.model, *a.optimizer, "", 3);
  rewrite_weights(run / "checkpoints/step_00000001", [&](io::NamedTensors& tensors) {
    for (auto& [name, t] : tensors) {
      if (name == first) {
        t = t.clone();
        t.view(-1)[0].fill_(std::numeric_limits<float>::quiet_NaN());
        t.view(-1)[1].fill_(std::numeric_limits<float>::infinity());
      }
    }
  });
  Trained b = make_trained(2, 0);
  std::vector<std::string> nonfinite;
  load_checkpoint(run / "checkpoints/step_00000001", b.model, nullptr, &nonfinite);
  ASSERT_EQ(nonfinite.size(), 1u);
  EXPECT_EQ(nonfinite[0].rfind(first + " (2 of ", 0), 0u) << nonfinite[0];
}

TEST(Checkpoint, ASetAsideCheckpointIsKeptUnlistedAndNotReplacedByANewSave) {
  ScratchDir run;
  Trained a = make_trained(1, 1);
  save_checkpoint(run.path(), state_at(10), a.model, *a.optimizer, "", 3);
  const std::string bytes = read_all(run / "checkpoints/step_00000010/model.safetensors");
  const fs::path aside = set_aside_checkpoint(run / "checkpoints/step_00000010");
  EXPECT_EQ(aside, run / "checkpoints/rejected/step_00000010");
  EXPECT_TRUE(list_checkpoints(run.path()).empty());
  train_once(a.model, *a.optimizer);
  save_checkpoint(run.path(), state_at(10), a.model, *a.optimizer, "", 3);
  EXPECT_EQ(read_all(aside / "model.safetensors"), bytes);
  EXPECT_EQ(set_aside_checkpoint(run / "checkpoints/step_00000010"),
            run / "checkpoints/rejected/step_00000010-1");
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
