// The trainer as a whole (docs/reliability.md R11, R12): allocations that cannot succeed, on the
// CPU too, end the run with one line naming the phase and the config, the out-of-memory exit code
// and no checkpoint; a 2-rank Gloo run started by scripts/launch.sh ends with the weights of a
// 1-rank run of the same global batch; on a GPU, training with CUDA graphs follows training without
// them step for step; train.trainable = inserted trains the inserted JetBlocks alone and
// train.init_from starts a run from another run's weights; train.eval_at_start evaluates the
// starting weights once.
#include "hypnos/train/trainer.h"

#include <gtest/gtest.h>

#include <torch/cuda.h>

#include <torch/serialize.h>

#include <csignal>
#include <regex>
#include <set>

#include "hypnos/config/error.h"
#include "hypnos/io/durable.h"
#include "hypnos/io/safetensors.h"
#include "hypnos/log.h"
#include "hypnos/train/checkpoint.h"
#include "hypnos/train/run_directory.h"
#include "hypnos/train/trainable.h"
#include "io/scratch_dir.h"
#include "testing/cuda.h"
#include "testing/paths.h"
#include "train/out_of_memory.h"

namespace hypnos::train {
namespace {

namespace fs = std::filesystem;
using io::testing::run_command;
using io::testing::ScratchDir;

const std::string kTiny = std::string(hypnos::testing::source_dir()) + "/tests/cli/tiny.yaml";

// train() in this process, undoing what it sets process-wide (log file, signal handlers).
int train_here(const fs::path& run_dir, const std::vector<std::string>& overrides,
               bool resume = false) {
  TrainRequest request;
  request.run_dir = run_dir;
  request.command_line = resume ? "trainer_test --resume" : "trainer_test";
  request.resume = resume;
  const int code = train(load_run_config(kTiny, overrides), request);
  log::set_file("");
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
  return code;
}

// Whatever torch throws for an allocation that cannot succeed, the trainer must recognise it as
// out of memory (it matches the CPU allocator's message: torch 2.11 throws a plain c10::Error).
TEST(TrainerOutOfMemory, WhatTorchThrowsForAFailedAllocationIsRecognised) {
  try {
    at::empty({int64_t{1} << 42}, at::kFloat);  // 16 TiB
    FAIL() << "a 16 TiB allocation succeeded";
  } catch (const std::exception& e) {
    const auto message = out_of_memory_message(e);
    ASSERT_TRUE(message.has_value()) << "not recognised as out of memory: " << e.what();
    EXPECT_EQ(message->find('\n'), std::string::npos) << *message;
  }
  EXPECT_FALSE(out_of_memory_message(std::runtime_error("disk full")).has_value());
}

// The promise (R11): one line on stderr naming the phase and the config, exit code 4, an event,
// and no checkpoint, not even a staged one.
void expect_out_of_memory(const fs::path& run_dir, const std::vector<std::string>& overrides,
                          const std::string& phase, const std::string& config) {
  ::testing::internal::CaptureStderr();
  const int code = train_here(run_dir, overrides);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, kExitOutOfMemory) << err;
  std::vector<std::string> lines;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("hypnos train: out of memory", 0) == 0) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_EQ(lines[0].rfind("hypnos train: out of memory while " + phase + ": ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(config), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("train.batch_size="), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("alloc"), std::string::npos) << "names no allocation: " << lines[0];
  EXPECT_EQ(err.find("frame #"), std::string::npos) << "a backtrace: " << err;
  EXPECT_TRUE(list_checkpoints(run_dir).empty());
  EXPECT_FALSE(fs::exists(run_dir / "checkpoints") && !fs::is_empty(run_dir / "checkpoints"))
      << "something was staged under checkpoints/";
  EXPECT_NE(io::testing::read_all(run_dir / "events.jsonl")
                .find("\"event\":\"out_of_memory\",\"phase\":\"" + phase + "\""),
            std::string::npos);
}

TEST(TrainerOutOfMemory, UnallocatableWeightsOrBatchGiveOneLineExitFourAndNoCheckpoint) {
  ScratchDir scratch;
  expect_out_of_memory(scratch / "weights", {"model.d_model=1000000", "model.n_heads=1"},
                       "building the model", "model.d_model=1000000");
  expect_out_of_memory(scratch / "batch", {"train.batch_size=1000000000", "train.eval_examples=0"},
                       "training step 1", "train.batch_size=1000000000");
}

TEST(TrainerDistributed, TwoGlooRanksEndWithTheWeightsOfOneRank) {
  ScratchDir scratch;
  const std::string common = " train " + kTiny + " train.steps=10 train.eval_examples=0 --out ";
  int status = 0;
  const std::string one = run_command("OMP_NUM_THREADS=1 " + std::string(hypnos::testing::cli()) +
                                          common + (scratch / "one").string() + " 2>&1",
                                      &status);
  ASSERT_EQ(status, 0) << one;
  const std::string two =
      run_command("OMP_NUM_THREADS=1 HYPNOS_BINARY=" + std::string(hypnos::testing::cli()) +
                      " bash " + hypnos::testing::source_dir() + "/scripts/launch.sh --nproc 2" +
                      common + (scratch / "two").string() + " 2>&1",
                  &status);
  ASSERT_EQ(status, 0) << two;

  const auto a = io::load_safetensors(scratch / "one/checkpoints/step_00000010/model.safetensors");
  const auto b = io::load_safetensors(scratch / "two/checkpoints/step_00000010/model.safetensors");
  const auto ma = a.as_map();
  const auto mb = b.as_map();
  ASSERT_EQ(ma.size(), mb.size());
  double worst = 0.0;
  for (const auto& [name, x] : ma) {
    ASSERT_TRUE(mb.count(name)) << name;
    const at::Tensor y = mb.at(name);
    ASSERT_EQ(x.sizes(), y.sizes()) << name;
    const double diff = (x.to(at::kDouble) - y.to(at::kDouble)).abs().max().item<double>();
    worst = std::max(worst, diff);
    EXPECT_LE(diff, 1e-6) << name;
  }
  RecordProperty("max_abs_weight_difference", std::to_string(worst));
  std::printf("2 ranks vs 1 rank after 10 steps: max |w2 - w1| = %.3g\n", worst);
}

// The "loss" of every train record in a run's metrics.jsonl, in step order.
std::vector<double> train_losses(const fs::path& run_dir) {
  std::vector<double> out;
  std::istringstream lines(io::testing::read_all(run_dir / "metrics.jsonl"));
  const std::regex loss("\"loss\":([-+0-9.eE]+)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (line.find("\"kind\":\"train\"") != std::string::npos && std::regex_search(line, m, loss)) {
      out.push_back(std::stod(m[1]));
    }
  }
  return out;
}

// The trainer with CUDA graphs (train.cuda_graph, the default) against the same run without: each
// step must see its own batch (a replay of stale inputs would give other losses), accumulate both
// micro-batches, and end at the same weights up to the loss reduction's summation order.
TEST(TrainerCuda, GraphedStepsTrainLikeEagerSteps) {
  HYPNOS_REQUIRE_CUDA();
  ScratchDir scratch;
  const std::vector<std::string> common{"run.device=cuda", "model.d_model=128", "train.steps=10",
                                        "train.grad_accum=2", "train.eval_examples=0"};
  auto with = [&](const std::string& extra) {
    auto v = common;
    v.push_back(extra);
    return v;
  };
  ASSERT_EQ(train_here(scratch / "graph", with("train.cuda_graph=true")), 0);
  ASSERT_EQ(train_here(scratch / "eager", with("train.cuda_graph=false")), 0);
  EXPECT_NE(io::testing::read_all(scratch / "graph/train.log").find("captured as a CUDA graph"),
            std::string::npos);
  EXPECT_EQ(io::testing::read_all(scratch / "eager/train.log").find("captured as a CUDA graph"),
            std::string::npos);
  const auto a = train_losses(scratch / "graph"), b = train_losses(scratch / "eager");
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), 10u);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(a[i], b[i], 1e-4 * std::abs(b[i])) << "step " << i + 1;
  const auto wa =
      io::load_safetensors(scratch / "graph/checkpoints/step_00000010/model.safetensors");
  const auto wb =
      io::load_safetensors(scratch / "eager/checkpoints/step_00000010/model.safetensors");
  for (const auto& [name, x] : wa.as_map()) {
    EXPECT_LE((x - wb.as_map().at(name)).abs().max().item<double>(), 1e-3) << name;
  }
}

// configs/README.md lists exactly the keys is_resumable_key accepts.
TEST(TrainerResume, TheDocumentedResumableKeysAreTheAcceptedOnes) {
  const std::string readme =
      io::testing::read_all(fs::path(hypnos::testing::source_dir()) / "configs" / "README.md");
  const auto begin = readme.find("<!-- resumable:begin -->");
  const auto end = readme.find("<!-- resumable:end -->");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  const std::string listed = readme.substr(begin, end - begin);
  for (const auto& key : yaml_line_keys(run_config_yaml(load_run_config(kTiny, {})))) {
    if (key.empty()) continue;
    EXPECT_EQ(listed.find("`" + key + "`") != std::string::npos, is_resumable_key(key)) << key;
  }
}

// The evaluation records of a run's metrics.jsonl at `step`, as written
// ({"kind":"eval","step":S,...).
std::vector<std::string> eval_records_at(const fs::path& run_dir, int64_t step) {
  std::vector<std::string> out;
  std::istringstream lines(io::testing::read_all(run_dir / "metrics.jsonl"));
  const std::string prefix = "{\"kind\":\"eval\",\"step\":" + std::to_string(step) + ",";
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line.substr(0, line.find(",\"eval_s\"")));
  }
  return out;
}

// train.eval_at_start: the starting weights are evaluated before step 1, and that record is the
// evaluation a run of no steps makes of the same weights; a run resumed at step 0 does not
// evaluate them twice, unless the earlier start's record never reached metrics.jsonl.
TEST(TrainerEvalAtStart, EvaluatesTheStartingWeightsOnceBeforeTheFirstStep) {
  ScratchDir scratch;
  const std::vector<std::string> keys = {"train.eval_at_start=true", "train.steps=2",
                                         "train.checkpoint_every=0"};
  ASSERT_EQ(train_here(scratch / "run", keys), 0);
  const auto at_start = eval_records_at(scratch / "run", 0);
  ASSERT_EQ(at_start.size(), 1u) << io::testing::read_all(scratch / "run/metrics.jsonl");
  EXPECT_EQ(eval_records_at(scratch / "run", 2).size(), 1u);
  ASSERT_EQ(train_here(scratch / "no_steps", {"train.steps=0"}), 0);
  EXPECT_EQ(eval_records_at(scratch / "no_steps", 0), at_start);
  ASSERT_EQ(train_here(scratch / "off", {"train.steps=2"}), 0);
  EXPECT_TRUE(eval_records_at(scratch / "off", 0).empty());

  // Resumed at step 0 (its checkpoints gone): the records after step 0 leave, the start's stays.
  const auto resume_here = [&] {
    io::remove_tree(scratch / "run/checkpoints");
    return train_here(scratch / "run", keys, /*resume=*/true);
  };
  ASSERT_EQ(resume_here(), 0);
  EXPECT_EQ(eval_records_at(scratch / "run", 0), at_start);
  // An earlier start stopped before writing it: the resumed run evaluates the start.
  fs::remove(scratch / "run/metrics.jsonl");
  ASSERT_EQ(resume_here(), 0);
  EXPECT_EQ(eval_records_at(scratch / "run", 0), at_start);
}

// The message of the config::ConfigError load_run_config(kTiny, overrides) throws ("" if none).
std::string config_error(const std::vector<std::string>& overrides) {
  try {
    load_run_config(kTiny, overrides);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "";
}

// train.trainable = inserted: after two steps every parameter outside the inserted JetBlocks is
// bit for bit its initial value (the trainer's seed-fixed initialisation, rebuilt here), every
// inserted one has moved, and the optimizer holds exactly the inserted blocks' parameters (no
// state for frozen ones). A model without inserted blocks refuses the key.
TEST(TrainerTrainable, OnlyTheInsertedJetBlocksTrainAndHoldOptimizerState) {
  ScratchDir scratch;
  const std::vector<std::string> overrides{"model.inserted_jet_after=[1,3]",
                                           "train.trainable=inserted", "train.steps=2",
                                           "train.checkpoint_every=2", "train.eval_examples=0"};
  ASSERT_EQ(train_here(scratch / "run", overrides), 0);
  const RunConfig config = load_run_config(kTiny, overrides);
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  nn::HybridLM initial(config.model);
  std::set<std::string> inserted;
  for (int64_t i : inserted_block_indices(config.model)) {
    for (const auto& p : initial->block(i).named_parameters()) {
      inserted.insert("blocks." + std::to_string(i) + "." + p.key());
    }
  }
  ASSERT_EQ(inserted_block_indices(config.model), (std::vector<int64_t>{2, 5}));
  const auto saved =
      io::load_safetensors(scratch / "run/checkpoints/step_00000002/model.safetensors").as_map();
  int64_t frozen = 0, moved = 0;
  for (const auto& p : initial->named_parameters()) {
    ASSERT_TRUE(saved.count(p.key())) << p.key();
    if (inserted.count(p.key())) {
      moved += !at::equal(saved.at(p.key()), p.value()) ? 1 : 0;
    } else {
      EXPECT_TRUE(at::equal(saved.at(p.key()), p.value())) << p.key() << " changed";
      ++frozen;
    }
  }
  EXPECT_GT(frozen, 10);
  EXPECT_EQ(moved, static_cast<int64_t>(inserted.size())) << "an inserted parameter did not move";

  apply_trainable(initial, Trainable::kInserted);
  const ParameterSplit split = split_parameters(*initial);
  EXPECT_EQ(split.muon.size() + split.adamw.size(), inserted.size());
  torch::serialize::InputArchive archive;
  archive.load_from((scratch / "run/checkpoints/step_00000002/optimizer.pt").string());
  c10::IValue n;
  archive.read("n_muon", n);
  EXPECT_EQ(n.toInt(), static_cast<int64_t>(split.muon.size()));
  archive.read("n_adamw", n);
  EXPECT_EQ(n.toInt(), static_cast<int64_t>(split.adamw.size()));

  EXPECT_NE(config_error({"train.trainable=inserted"})
                .find("train.trainable = inserted: the model has no inserted JetBlocks"),
            std::string::npos);
}

// train.init_from: a run's step 0 holds the weights of the other run's newest checkpoint bit for
// bit, with an optimizer that has no state yet; another model, or a directory that is not a run,
// is a config error naming the key.
TEST(TrainerInitFrom, StartsFromTheOtherRunsWeightsWithAFreshOptimizer) {
  ScratchDir scratch;
  ASSERT_EQ(train_here(scratch / "first", {"train.steps=3", "train.eval_examples=0"}), 0);
  const std::string from = "train.init_from=" + (scratch / "first").string();
  ASSERT_EQ(train_here(scratch / "second", {from, "train.steps=0", "train.eval_examples=0"}), 0);
  const auto a =
      io::load_safetensors(scratch / "first/checkpoints/step_00000003/model.safetensors").as_map();
  const auto b =
      io::load_safetensors(scratch / "second/checkpoints/step_00000000/model.safetensors").as_map();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, x] : a) EXPECT_TRUE(at::equal(x, b.at(name))) << name;
  EXPECT_NE(io::testing::read_all(scratch / "second/events.jsonl")
                .find("\"init_from\":\"" + (scratch / "first/checkpoints/step_00000003").string()),
            std::string::npos);

  const RunConfig config = load_run_config(kTiny, {from});
  nn::HybridLM model(config.model);
  Optimizer optimizer(split_parameters(*model), config.optim);
  load_checkpoint(scratch / "second/checkpoints/step_00000000", model, &optimizer);
  for (size_t i = 0; i < optimizer.parameters().size(); ++i) {
    EXPECT_TRUE(optimizer.state_of(i).empty()) << "parameter " << i << " has optimizer state";
  }

  const std::string other = config_error({from, "model.d_model=64"});
  EXPECT_NE(other.find("its model is not this run's"), std::string::npos) << other;
  EXPECT_NE(other.find("d_model: 64"), std::string::npos) << other;
  EXPECT_NE(config_error({"train.init_from=" + scratch.path().string()})
                .find("not a hypnos run directory (no config.yaml)"),
            std::string::npos);
}

}  // namespace
}  // namespace hypnos::train
