// Timing for the GPU benchmarks: the median of individually CUDA-event-timed runs after warm-up,
// and the --reps option that sets how many.
#pragma once
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace hypnos::bench {

/// Milliseconds of f() on the current stream: `warmup` untimed runs, then the median of `reps`.
template <class F>
double median_ms(F&& f, int reps, int warmup) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  const auto stream = at::cuda::getCurrentCUDAStream();
  for (int i = 0; i < reps; ++i) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record(stream);
    f();
    stop.record(stream);
    stop.synchronize();
    ms.push_back(double(start.elapsed_time(stop)));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

/// --reps from the parsed flags (`fallback` when absent); not a positive integer throws
/// std::invalid_argument (the command line reports it as a usage error).
inline int reps_flag(const std::map<std::string, std::string>& flags, int fallback) {
  const auto it = flags.find("--reps");
  if (it == flags.end()) return fallback;
  int reps = 0;
  try {
    reps = std::stoi(it->second);
  } catch (const std::exception&) {
  }
  if (reps < 1) {
    throw std::invalid_argument("--reps expects a positive integer, got '" + it->second + "'");
  }
  return reps;
}

}  // namespace hypnos::bench
