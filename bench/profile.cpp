#include "bench/profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace hypnos::bench {

void print_profile(const std::string& title, const std::function<void()>& work, ProfileRows rows) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const std::set<ActivityType> activities{ActivityType::CPU, ActivityType::CUDA};
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  const auto t0 = std::chrono::steady_clock::now();
  work();
  // The work's kernels are asynchronous: wait for them, or the profiler stops before they ran.
  if (torch::cuda::is_available()) torch::cuda::synchronize();
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto result = prof::disableProfiler();
  struct Total {
    int64_t count = 0;
    double ms = 0;
  };
  std::map<std::string, Total> device_work, host_ops;
  int64_t cpu_ops = 0, device_events = 0;
  double device_ms = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() == c10::DeviceType::CUDA) {
      auto& t = device_work[e.name().substr(0, 100)];
      t.count += 1;
      t.ms += static_cast<double>(e.durationNs()) * 1e-6;
      device_ms += static_cast<double>(e.durationNs()) * 1e-6;
      ++device_events;
    } else {
      auto& t = host_ops[e.name()];
      t.count += 1;
      t.ms += static_cast<double>(e.durationNs()) * 1e-6;
      ++cpu_ops;
    }
  }
  std::vector<std::pair<std::string, Total>> device_work_rows(device_work.begin(),
                                                              device_work.end());
  std::sort(device_work_rows.begin(), device_work_rows.end(),
            [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
  std::vector<std::pair<std::string, Total>> ops(host_ops.begin(), host_ops.end());
  std::sort(ops.begin(), ops.end(),
            [](auto& a, auto& b) { return a.second.count > b.second.count; });
  std::fprintf(stderr,
               "PROFILE %s: wall %.2f ms, device work %.2f ms in %lld kernels/copies (%.0f%% of "
               "wall), %lld host events\n",
               title.c_str(), wall_ms, device_ms, static_cast<long long>(device_events),
               100.0 * device_ms / wall_ms, static_cast<long long>(cpu_ops));
  std::fprintf(stderr, "%10s %8s %10s  %s\n", "total ms", "count", "mean us", "device work");
  for (size_t i = 0; i < device_work_rows.size() && i < size_t(rows.device); ++i) {
    const auto& [name, t] = device_work_rows[i];
    std::fprintf(stderr, "%10.3f %8lld %10.1f  %s\n", t.ms, static_cast<long long>(t.count),
                 1e3 * t.ms / static_cast<double>(t.count), name.c_str());
  }
  if (rows.host == 0) return;  // no host table asked for: no header either
  std::fprintf(stderr, "%10s %8s %10s  %s\n", "total ms", "count", "mean us", "host op (by count)");
  for (size_t i = 0; i < ops.size() && i < size_t(rows.host); ++i) {
    const auto& [name, t] = ops[i];
    std::fprintf(stderr, "%10.3f %8lld %10.1f  %s\n", t.ms, static_cast<long long>(t.count),
                 1e3 * t.ms / static_cast<double>(t.count), name.c_str());
  }
}

}  // namespace hypnos::bench
