// Learning-rate schedules as a multiplier on every group's base lr (the paper reports none; the
// reference trains at a constant lr, hence the default).
#pragma once
#include <array>
#include <cstdint>
#include <string_view>

#include "hypnos/config/fields.h"

namespace hypnos::train {

enum class ScheduleKind { kConstant, kWarmupCosine };

struct ScheduleOptions {
  /// constant: multiplier 1 at every step (warmup_steps and min_lr_ratio unused).
  /// warmup_cosine: linear warmup to 1 over warmup_steps, then a half cosine down to min_lr_ratio
  /// at the last step. Default: constant.
  ScheduleKind kind = ScheduleKind::kConstant;
  /// Steps of linear warmup (warmup_cosine). Default: 100.
  int64_t warmup_steps = 100;
  /// Final multiplier of warmup_cosine as a fraction of the peak. Default: 0.1.
  double min_lr_ratio = 0.1;

  template <class V>
  void visit(V& v) {
    v.field("kind", kind, "learning-rate schedule: constant | warmup_cosine");
    v.field("warmup_steps", warmup_steps, "linear warmup steps (warmup_cosine)",
            config::Range{0, 1e12});
    v.field("min_lr_ratio", min_lr_ratio, "final lr as a fraction of the peak (warmup_cosine)",
            config::Range{0, 1});
  }
};

/// The multiplier of a run of `total_steps` optimizer steps; steps are counted from 0.
class Schedule {
 public:
  /// Throws std::invalid_argument when total_steps < 1, or for warmup_cosine when
  /// warmup_steps >= total_steps or min_lr_ratio is outside [0, 1].
  Schedule(const ScheduleOptions& options, int64_t total_steps);

  /// Multiplier for the update of step `step` (0-based):
  ///   warmup (step < W):  (step + 1) / W, so the first update is not wasted at lr 0;
  ///   cosine:             r + (1 - r) * (1 + cos(pi * (step - W) / (total - 1 - W))) / 2,
  ///                       1 at step W, r at step total - 1 and after it (1 when W = total - 1).
  double multiplier(int64_t step) const;

 private:
  ScheduleOptions options_;
  int64_t total_steps_;
};

}  // namespace hypnos::train

namespace hypnos::config {
template <>
struct EnumNames<train::ScheduleKind> {
  static constexpr std::array<std::string_view, 2> names{"constant", "warmup_cosine"};
};
}  // namespace hypnos::config
