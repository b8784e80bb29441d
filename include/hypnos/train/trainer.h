// The training run: config -> model -> task data -> loop (window/sleep engine inside each step) ->
// metrics and checkpoints (STYLE.md habit 1). `hypnos train` is a thin wrapper around train().
#pragma once
#include <filesystem>
#include <string>

#include "hypnos/train/run_config.h"

namespace hypnos::train {

struct TrainRequest {
  std::filesystem::path run_dir;  ///< where config.yaml, metrics.jsonl, checkpoints/ live
  bool resume = false;            ///< continue from the newest valid checkpoint in run_dir
  std::string command_line;       ///< recorded in command.txt
};

/// Exit codes of train() besides 0 (finished, or stopped cleanly by SIGTERM after a checkpoint).
inline constexpr int kExitNonFinite = 3;  ///< train.nonfinite stopped the run before an update
inline constexpr int kExitOutOfMemory = 4;

/// Runs the training described by `config` and returns the process exit code. Only rank 0 writes.
/// Throws config::ConfigError for a run directory that cannot be used as asked (exists without
/// --resume, a resume whose config changed more than the resumable keys).
int train(const RunConfig& config, const TrainRequest& request);

/// Keys that may change when a run is resumed (the rest must match config.yaml in the run directory).
bool is_resumable_key(const std::string& key);

}  // namespace hypnos::train
