// Loading and cross-checking the run configuration (the per-key checks live in each options
// struct).
#include "hypnos/train/run_config.h"

#include <filesystem>
#include <sstream>

#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/nn/hf_config.h"
#include "hypnos/train/checkpoint.h"

namespace hypnos::train {
namespace {

/// The model section alone, to compare two runs' models as their config.yaml writes them.
struct ModelSection {
  nn::ModelOptions model;
  template <class V>
  void visit(V& v) {
    v.section("model", model);
  }
};

/// train.init_from names a run directory with a checkpoint whose model is this run's: its
/// config.yaml's model section equals this one but for `from` (where the first weights came from)
/// and the ops keys (how the ops compute, not what). Checked here, before a run directory exists;
/// the trainer then loads the newest checkpoint that verifies.
void check_init_from(const RunConfig& config) {
  const std::filesystem::path dir = config.train.init_from;
  const std::filesystem::path saved = dir / "config.yaml";
  if (!std::filesystem::exists(saved)) {
    throw std::invalid_argument("train.init_from = " + dir.string() +
                                ": not a hypnos run directory (no config.yaml)");
  }
  if (list_checkpoints(dir).empty()) {
    throw std::invalid_argument("train.init_from = " + dir.string() +
                                ": the run has no checkpoint");
  }
  ModelSection mine{config.model}, theirs{config::load<RunConfig>(saved.string(), {}).model};
  for (ModelSection* m : {&mine, &theirs}) {
    m->model.from.clear();
    m->model.ops = ops::OpsOptions();
  }
  std::istringstream a(config::to_yaml(mine)), b(config::to_yaml(theirs));
  std::string differences;
  for (std::string x, y; std::getline(a, x) && std::getline(b, y);) {
    if (x != y) differences += "\n  this run:  " + x + "\n  that run:  " + y;
  }
  if (!differences.empty()) {
    throw std::invalid_argument("train.init_from = " + dir.string() +
                                ": its model is not this run's (" + saved.string() +
                                "):" + differences);
  }
}

}  // namespace

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig config = config::load<RunConfig>(path, overrides);
  // The task, made once when a rule needs it (a token file's index is read to make it).
  std::unique_ptr<tasks::Task> made;
  auto task = [&made](const RunConfig& c) -> const tasks::Task* {
    if (!made) made = tasks::make_task(c.task, c.run.seed);
    return made.get();
  };
  // A token file is checked against the tokenizer of the model it feeds (docs/tasks.md 3.5).
  if (!config.task.gsm.token_file.empty() && config.task.gsm.tokenizer.empty()) {
    config.task.gsm.tokenizer = config.model.from;
  }
  try {
    if (!config.model.from.empty()) {
      // A pretrained checkpoint: its config.json decides the architecture (where it lies, the
      // delta-rule backend and JetBlocks inserted into Ouro are the run's).
      try {
        config.model = nn::pretrained_run_options(config.model);
      } catch (const std::invalid_argument&) {
        throw;
      } catch (const std::runtime_error& e) {  // config.json cannot be read
        throw std::invalid_argument(std::string("model.from: ") + e.what());
      }
      const int64_t task_vocab = task(config)->vocab_size();
      if (task_vocab > config.model.vocab_size) {
        throw std::invalid_argument("model.from = " + config.model.from + ": its vocabulary (" +
                                    std::to_string(config.model.vocab_size) +
                                    ") is smaller than the task's (" + std::to_string(task_vocab) +
                                    ")");
      }
    }
    if (config.model.vocab_size == 0) config.model.vocab_size = task(config)->vocab_size();
    if (config.train.epochs > 0) {
      const int64_t problems = task(config)->train_size();
      if (problems == 0) {
        throw std::invalid_argument("train.epochs = " + std::to_string(config.train.epochs) +
                                    ": the task's training data is generated, not a file (set "
                                    "task.token_file or task.data_file, or train.steps)");
      }
      const int64_t examples = config.train.epochs * problems;
      config.train.steps = (examples + config.train.batch_size - 1) / config.train.batch_size;
    }
    // A file's problems bound an evaluation: refused now rather than at the first evaluation.
    const bool from_file =
        !config.task.gsm.token_file.empty() || !config.task.gsm.data_file.empty();
    if (config.task.name == tasks::TaskName::kGsmInfinite && from_file &&
        config.train.eval_examples > task(config)->test_size()) {
      throw std::invalid_argument(
          "train.eval_examples = " + std::to_string(config.train.eval_examples) +
          ": the task's test file holds " + std::to_string(task(config)->test_size()) +
          " problems (" +
          (config.task.gsm.eval_token_file.empty()
               ? (config.task.gsm.token_file.empty() ? "task.data_file" : "task.token_file")
               : "task.eval_token_file") +
          ")");
    }
    config.model.validate();
    config.sleep.validate(config.model.n_blocks());
    if (config.train.trainable == Trainable::kInserted && config.model.inserted_jet_after.empty()) {
      throw std::invalid_argument(
          "train.trainable = inserted: the model has no inserted JetBlocks "
          "(model.inserted_jet_after is empty)");
    }
    if (!config.train.init_from.empty()) check_init_from(config);
    // Fails early (before a run directory exists) on a schedule that cannot fit the run.
    if (config.train.steps > 0) Schedule(config.schedule, config.train.steps);
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("config error: ") + e.what());
  }
  // bf16 weights compute in bf16: fp32 compute (precision: fp32) cannot be had with them.
  if (config.train.param_dtype == ParamDtype::kBf16 && config.train.precision != Precision::kBf16) {
    throw config::ConfigError(
        "config error: train.param_dtype = bf16 needs train.precision = bf16 (the weights are "
        "bf16, "
        "so the matmuls run in bf16; precision fp32 would promise fp32 compute), got "
        "train.precision = fp32");
  }
  if (config.train.batch_size % config.train.grad_accum != 0) {
    throw config::ConfigError("config error: train.batch_size (" +
                              std::to_string(config.train.batch_size) +
                              ") must be divisible by train.grad_accum (" +
                              std::to_string(config.train.grad_accum) + ")");
  }
  return config;
}

std::string run_config_yaml(const RunConfig& config) {
  return config::to_yaml(config);
}

}  // namespace hypnos::train
