// Timing for the GPU benchmarks: the median of individually CUDA-event-timed runs after warm-up
// (how many: bench/reps_flag.h).
#pragma once
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>

#include <algorithm>
#include <vector>

#include "bench/reps_flag.h"

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

}  // namespace hypnos::bench
