// The training run: config -> model -> task data -> loop (window/sleep engine inside each step) ->
// metrics and checkpoints (docs/contributing.md habit 1). `hypnos train` is a thin wrapper around
// train().
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

/// Exit codes of train() besides 0 (finished) and 2 (config::ConfigError: a bad config, a run
/// directory in use by another process, a resume whose config changed a key that may not change).
inline constexpr int kExitNonFinite = 3;  ///< train.nonfinite stopped the run before an update
inline constexpr int kExitOutOfMemory = 4;
/// SIGINT or SIGTERM stopped the run after checkpointing its last completed step: the exit code is
/// kExitSignalBase + the signal (130, 143), as shells and schedulers read a death by that signal.
inline constexpr int kExitSignalBase = 128;

/// Runs the training described by `config` and returns the process exit code. Only rank 0 writes,
/// holding the run directory's lock (RunDirectoryLock) for the whole run. Throws
/// config::ConfigError for a run directory that cannot be used as asked (in use, exists without
/// --resume, a resume whose config differs from its checkpoint's in a key that may not change) and
/// CheckpointMismatch for a checkpoint that verifies but does not fit the model.
int train(const RunConfig& config, const TrainRequest& request);

/// Keys that may change when a run is resumed (the rest must match the config of the checkpoint it
/// resumes from; configs/README.md lists them).
bool is_resumable_key(const std::string& key);

}  // namespace hypnos::train
