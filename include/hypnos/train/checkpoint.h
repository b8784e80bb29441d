// Checkpoints that survive faults (docs/reliability.md): checkpoints/step_XXXXXXXX/ is built under
// a temporary name, fsynced, given a manifest of SHA-256 sums written last, and renamed into place;
// loading verifies the manifest before deserialising anything and falls back past corrupt
// checkpoints, never past one that verifies but does not fit.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
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
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir,
                                      const TrainingState& state, nn::HybridLM& model,
                                      const Optimizer& optimizer, const std::string& config_yaml,
                                      int64_t keep);

/// Complete checkpoints under run_dir/checkpoints, newest first (by step).
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_dir);

/// A checkpoint whose bytes verify but which does not fit the model or optimizer it is loaded into
/// (a missing or extra tensor, another shape or dtype, another optimizer layout). Unlike corruption
/// this is never skipped: falling back to an older checkpoint, or to step 0, would train over the
/// newer ones. what() names the checkpoint and the tensor at fault.
class CheckpointMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The newest complete checkpoint whose manifest verifies (or exactly step `only_step` when given).
/// Every checkpoint skipped on the way is corrupt and reported through `on_problem` with a message
/// like "checksum mismatch: <file>". nullopt when none verifies.
std::optional<std::filesystem::path> find_latest_valid_checkpoint(
    const std::filesystem::path& run_dir,
    const std::function<void(const std::filesystem::path&, const std::string&)>& on_problem,
    std::optional<int64_t> only_step = std::nullopt);

/// Loads checkpoint `dir` (verified) into `model` and, when given, `optimizer`. Everything is read
/// and checked before anything is applied: a mismatch throws CheckpointMismatch and leaves both as
/// they were. Floating-point weights holding NaN or Inf are listed in `nonfinite` when given
/// ("name (k of n values)"): loaded, but the caller reports them.
TrainingState load_checkpoint(const std::filesystem::path& dir, nn::HybridLM& model,
                              Optimizer* optimizer, std::vector<std::string>* nonfinite = nullptr);

/// find_latest_valid_checkpoint, then load_checkpoint: corrupt checkpoints are reported and
/// skipped, a verified one that does not fit throws CheckpointMismatch. nullopt when none verifies.
std::optional<TrainingState> load_latest_checkpoint(
    const std::filesystem::path& run_dir, nn::HybridLM& model, Optimizer* optimizer,
    const std::function<void(const std::filesystem::path&, const std::string&)>& on_problem,
    std::optional<int64_t> only_step = std::nullopt);

/// Moves a rejected checkpoint out of the way, to checkpoints/rejected/<its name> (with a suffix
/// when that exists): never deleted, never listed again, and a new save of its step does not
/// replace it. Returns the new path.
std::filesystem::path set_aside_checkpoint(const std::filesystem::path& dir);

}  // namespace hypnos::train
