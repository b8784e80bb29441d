// The whole configuration of a training run: one section per component, in the order a reader meets
// them (run -> task -> model -> sleep -> train -> optim -> schedule). configs/README.md documents
// it.
#pragma once
#include <string>
#include <vector>

#include "hypnos/nn/model_options.h"
#include "hypnos/sleep/sleep_options.h"
#include "hypnos/tasks/task_options.h"
#include "hypnos/train/distributed.h"
#include "hypnos/train/optimizer.h"
#include "hypnos/train/schedule.h"
#include "hypnos/train/train_options.h"

namespace hypnos::train {

struct RunConfig {
  RunOptions run;
  tasks::TaskOptions task;
  nn::ModelOptions model;
  sleep::SleepOptions sleep;
  TrainOptions train;
  OptimizerOptions optim;
  ScheduleOptions schedule;
  DistributedOptions distributed;

  template <class V>
  void visit(V& v) {
    v.section("run", run);
    v.section("task", task);
    v.section("model", model);
    v.section("sleep", sleep);
    v.section("train", train);
    v.section("optim", optim);
    v.section("schedule", schedule);
    v.section("distributed", distributed);
  }
};

/// Loads a config file (empty path: defaults) with `key.path=value` overrides, fills what follows
/// from other sections (model.vocab_size 0 -> the task's vocabulary) and checks the cross-section
/// rules (a valid model, sleep.loop_layers within the model, batch_size divisible by grad_accum,
/// param_dtype bf16 only with precision bf16, ...). Every problem is a config::ConfigError naming
/// the key.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides);

/// The resolved config as YAML; load_run_config of it gives the same text byte for byte.
std::string run_config_yaml(const RunConfig& config);

}  // namespace hypnos::train
