// Checkpoints that survive faults (RELIABILITY.md R5-R7): checkpoints/step_XXXXXXXX/ is built under a
// temporary name, fsynced, given a manifest of SHA-256 sums written last, and renamed into place; loading
// verifies the manifest before deserialising anything and falls back past corrupt checkpoints.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/train/optimizer.h"

namespace hypnos::train {

/// What the loop needs besides weights and optimizer state to continue bitwise.
struct TrainingState {
  int64_t step = 0;               ///< optimizer steps completed (the next step to run)
  int64_t tokens = 0;             ///< training tokens consumed (all ranks)
  int64_t consecutive_skips = 0;  ///< non-finite steps skipped in a row (train.nonfinite: skip)
  double elapsed_s = 0.0;         ///< training wall time before this process
};

/// "step_00000030"
std::string checkpoint_name(int64_t step);

/// Writes checkpoints/step_XXXXXXXX/ under `run_dir`: model.safetensors (HF-style names),
/// optimizer.pt, trainer_state.json, config.yaml, manifest.json (last); then keeps the newest
/// `keep` checkpoints. Returns the checkpoint's path.
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir, const TrainingState& state,
                                      nn::HybridLM& model, const Optimizer& optimizer,
                                      const std::string& config_yaml, int64_t keep);

/// Complete checkpoints under run_dir/checkpoints, newest first (by step).
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_dir);

/// Loads the newest checkpoint that passes its manifest (or exactly step `only_step` when given) into
/// `model` and, when given, `optimizer`. Every checkpoint skipped is reported through `on_problem`
/// with a message like "checksum mismatch: model.safetensors". Returns nullopt when none is valid.
std::optional<TrainingState> load_latest_checkpoint(
    const std::filesystem::path& run_dir, nn::HybridLM& model, Optimizer* optimizer,
    const std::function<void(const std::filesystem::path&, const std::string&)>& on_problem,
    std::optional<int64_t> only_step = std::nullopt);

}  // namespace hypnos::train
