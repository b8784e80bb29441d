// One run of a function under the Kineto profiler (CPU and CUDA activity), summarised on stderr:
// wall time, device time in kernels and copies (their sum against the wall time says how
// launch-bound the work is), the device work that took longest grouped by kernel name, and the most
// frequent host operators.
#pragma once
#include <functional>
#include <string>

namespace hypnos::bench {

struct ProfileRows {
  int device = 30;  ///< longest kernels/copies listed
  int host = 25;    ///< most frequent host operators listed (0: none)
};

void print_profile(const std::string& title, const std::function<void()>& work,
                   ProfileRows rows = {});

}  // namespace hypnos::bench
