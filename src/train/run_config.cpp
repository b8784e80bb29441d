// Loading and cross-checking the run configuration (the per-key checks live in each options
// struct).
#include "hypnos/train/run_config.h"

#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/nn/hf_config.h"

namespace hypnos::train {

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig config = config::load<RunConfig>(path, overrides);
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
      const int64_t task_vocab = tasks::make_task(config.task, config.run.seed)->vocab_size();
      if (task_vocab > config.model.vocab_size) {
        throw std::invalid_argument("model.from = " + config.model.from + ": its vocabulary (" +
                                    std::to_string(config.model.vocab_size) +
                                    ") is smaller than the task's (" + std::to_string(task_vocab) +
                                    ")");
      }
    }
    if (config.model.vocab_size == 0) {
      config.model.vocab_size = tasks::make_task(config.task, config.run.seed)->vocab_size();
    }
    config.model.validate();
    config.sleep.validate(config.model.n_blocks());
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
