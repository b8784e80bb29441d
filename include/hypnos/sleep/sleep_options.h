// The `sleep.*` config section (docs/design.md section 1) and the backprop knobs the trainer
// exposes as train.truncate_every and train.recompute.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "hypnos/config/fields.h"
#include "hypnos/memory/model_memory.h"

namespace hypnos::sleep {

/// Which windows sleep (docs/design.md 1.2).
enum class Schedule {
  kEvicted,   ///< every evicted window (all but the last) gets N passes; every window has wake
              ///< logits
  kLossFree,  ///< the paper's literal rule, per example: a row sleeps (N passes) on a window where
              ///< it holds no loss token, and gets no logits there; a row with loss tokens in the
              ///< window gets one pass. A row's result never depends on its batch mates.
};

/// Where each sleep pass's SSM state starts (docs/design.md 1.3).
enum class StateBetweenPasses {
  kThread,   ///< from the state the previous pass left (the paper)
  kRestart,  ///< from the window-start state; only the last pass's final state is kept (ablation)
};

struct SleepOptions {
  /// N: passes per sleeping window; 1 is the plain hybrid. Default: 1.
  int64_t n_passes = 1;
  /// L: tokens per window. Default: 24.
  int64_t window = 24;
  /// Default: evicted.
  Schedule schedule = Schedule::kEvicted;
  /// Default: thread.
  StateBetweenPasses state_between_passes = StateBetweenPasses::kThread;
  /// [a, b): blocks looped N times while sleeping; blocks before a and from b run once.
  /// Default: empty = all blocks.
  std::vector<int64_t> loop_layers;
  /// Default: hard.
  memory::Eviction eviction = memory::Eviction::kHard;

  /// Throws std::invalid_argument naming the key, the value and what was expected.
  void validate(int64_t n_layers) const;

  template <class V>
  void visit(V& v) {
    v.field("n_passes", n_passes, "passes per sleeping window (1 = plain hybrid)",
            config::Range{1, 64});
    v.field("window", window, "tokens per window L", config::Range{1, 1e9});
    v.field("schedule", schedule,
            "which windows sleep: evicted (all but the last) | loss_free (per example: where it "
            "holds no loss token)");
    v.field("state_between_passes", state_between_passes,
            "SSM state at the start of each pass: thread | restart");
    v.field("loop_layers", loop_layers, "[a, b): blocks looped while sleeping (empty = all)",
            config::Range{0, 1e6});
    v.field("eviction", eviction, "what survives a window boundary: hard | sliding");
  }
};

/// Activation checkpointing along the window axis (docs/design.md 1.7).
enum class Recompute {
  kNone,    ///< keep every window's activations for backward
  kWindow,  ///< keep only each window's inputs; recompute its forward in backward
  /// kWindow, and inside the window's replay keep only each block call's inputs (h and the block's
  /// memory); each block runs a third time in its own backward
  kBlock,
};

struct BackpropOptions {
  /// K: detach S (and every other memory tensor) after every K windows; 0 = full BPTT. Default: 0.
  int64_t truncate_every = 0;
  /// Default: none.
  Recompute recompute = Recompute::kNone;

  template <class V>
  void visit(V& v) {
    v.field("truncate_every", truncate_every, "detach the memory every K windows (0 = never)",
            config::Range{0, 1e9});
    v.field("recompute", recompute, "activation checkpointing: none | window | block");
  }
};

}  // namespace hypnos::sleep

template <>
struct hypnos::config::EnumNames<hypnos::sleep::Schedule> {
  static constexpr std::array<std::string_view, 2> names{"evicted", "loss_free"};
};
template <>
struct hypnos::config::EnumNames<hypnos::sleep::StateBetweenPasses> {
  static constexpr std::array<std::string_view, 2> names{"thread", "restart"};
};
template <>
struct hypnos::config::EnumNames<hypnos::sleep::Recompute> {
  static constexpr std::array<std::string_view, 3> names{"none", "window", "block"};
};
