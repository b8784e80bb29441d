// The two RNG primitives that need <cmath> (docs/tasks.md section 0); the rest are inline in rng.h.
#include "hypnos/tasks/rng.h"

#include <cmath>
#include <numbers>

namespace hypnos::tasks {

size_t Stream::weighted(const std::vector<double>& w) {
  double total = 0.0;
  for (double x : w) total += x;
  const double target = real() * total;
  double running = 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    running += w[i];
    if (running > target) return i;
  }
  return w.empty() ? 0 : w.size() - 1;  // only reached through rounding at the very top
}

double Stream::gauss() {
  const double u1 = 1.0 - real();
  const double u2 = real();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

}  // namespace hypnos::tasks
