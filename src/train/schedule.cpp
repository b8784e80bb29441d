// Learning-rate multipliers: constant, and linear warmup followed by a half cosine.
#include "hypnos/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>
#include <stdexcept>
#include <string>

namespace hypnos::train {
namespace {

std::string format(double x) {
  std::ostringstream out;
  out << x;
  return out.str();
}

}  // namespace

Schedule::Schedule(const ScheduleOptions& options, int64_t total_steps)
    : options_(options), total_steps_(total_steps) {
  if (total_steps < 1) {
    throw std::invalid_argument("Schedule: total_steps must be >= 1, got " +
                                std::to_string(total_steps));
  }
  if (options.kind == ScheduleKind::kWarmupCosine) {
    if (options.warmup_steps < 0 || options.warmup_steps >= total_steps) {
      throw std::invalid_argument("Schedule: schedule.warmup_steps must be in [0, total_steps = " +
                                  std::to_string(total_steps) + "), got " +
                                  std::to_string(options.warmup_steps));
    }
    if (!(options.min_lr_ratio >= 0.0 && options.min_lr_ratio <= 1.0)) {
      throw std::invalid_argument("Schedule: schedule.min_lr_ratio must be in [0, 1], got " +
                                  format(options.min_lr_ratio));
    }
  }
}

double Schedule::multiplier(int64_t step) const {
  if (step < 0) {
    throw std::invalid_argument("Schedule::multiplier: step must be >= 0, got " +
                                std::to_string(step));
  }
  switch (options_.kind) {
    case ScheduleKind::kConstant:
      return 1.0;
    case ScheduleKind::kWarmupCosine: {
      const int64_t warmup = options_.warmup_steps;
      if (step < warmup) return static_cast<double>(step + 1) / static_cast<double>(warmup);
      const int64_t span = total_steps_ - 1 - warmup;  // steps after the peak
      if (span <= 0) return 1.0;                       // the last step is the peak
      const double progress =
          std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(span));
      const double r = options_.min_lr_ratio;
      return r + (1.0 - r) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
  }
  throw std::logic_error("Schedule::multiplier: unknown ScheduleKind");
}

}  // namespace hypnos::train
