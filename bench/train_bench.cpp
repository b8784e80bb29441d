// Times full training steps (window loop forward with N passes, masked CE, backward, Muon/AdamW
// update; --no-update stops after the backward) of the Rule 110 paper model. Each N runs in a fresh
// child process so that its peak memory (CUDA allocator peak, or the CPU process's max RSS) belongs
// to that N alone.
#include "bench/train_bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#ifdef HYPNOS_WITH_CUDA_TORCH
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "bench/child_process.h"
#include "bench/ops_overrides.h"
#include "bench/profile.h"
#include "hypnos/tasks/batch.h"
#include "hypnos/train/micro_batch_step.h"
#include "hypnos/train/optimizer.h"
#include "hypnos/train/run_config.h"

namespace hypnos::bench {
namespace {

struct Result {
  int64_t n_passes = 0;
  double step_ms = 0, tokens_per_s = 0, peak_mb = 0;
};

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      out.push_back(std::stoll(item));
    } catch (const std::exception&) {
      throw std::invalid_argument("--passes expects a list like 1,2,4, got '" + s + "'");
    }
    if (out.back() < 1) throw std::invalid_argument("--passes: N must be >= 1");
  }
  if (out.empty()) throw std::invalid_argument("--passes: empty list");
  return out;
}

int64_t parse_positive(const std::string& flag, const std::string& value) {
  try {
    const int64_t x = std::stoll(value);
    if (x >= 1) return x;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(flag + " expects a positive integer, got '" + value + "'");
}

// One N in this process: warm-up steps, then the median of timed steps. The step is the trainer's:
// MicroBatchStep (graphed or eager) for forward + backward, then clipping and the Muon + AdamW
// update (unless `update` is false), with one host read of the loss as the trainer does.
Result measure(int64_t n_passes, int64_t batch, const at::Device& device, int64_t repeats,
               bool graph, bool update, bool profile, const ops::OpsOptions& ops) {
  train::RunConfig config;  // the paper model: AGAG, width 256, 4 heads, Rule 110 window 24
  config.model.vocab_size = 6;
  config.model.ops = ops;
  config.sleep.n_passes = n_passes;
  config.sleep.window = 24;
  torch::manual_seed(0);
  if (device.is_cuda()) at::globalContext().setAllowTF32CuBLAS(true);  // as the trainer does
  auto task = tasks::make_task(config.task, 0);
  nn::HybridLM model(config.model);
  model->to(device);
  train::Optimizer optimizer(train::split_parameters(*model), config.optim);
  auto options = train::MicroBatchStepOptions::from(config);
  options.cuda_graph = graph;
  train::MicroBatchStep micro_step(model, options, device);
  const auto batch_data = tasks::make_batch(*task, tasks::Split::kTrain, 0, batch);
  auto step = [&] {
    optimizer.zero_grad(/*set_to_none=*/!micro_step.keeps_gradient_tensors());
    const double loss = micro_step.run(batch_data).item<double>();
    if (!std::isfinite(loss)) throw std::runtime_error("train: non-finite loss");
    if (update) {
      optimizer.clip_gradients();
      optimizer.step();
    }
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < 3; ++i) step();
  if (graph && micro_step.captures() != 1) {
    throw std::runtime_error("train: expected one CUDA graph capture, got " +
                             std::to_string(micro_step.captures()));
  }
  if (profile) print_profile("one step", step);
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  Result r;
  r.n_passes = n_passes;
  r.step_ms = median * 1e3;
  r.tokens_per_s = static_cast<double>(batch * task->seq_len()) / median;
#ifdef HYPNOS_WITH_CUDA_TORCH
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    r.peak_mb = static_cast<double>(stats.allocated_bytes[aggregate].peak) / (1024.0 * 1024.0);
  }
#endif
  if (!device.is_cuda()) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    r.peak_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
  }
  return r;
}

// Runs this program again for one N and reads its one-line result.
Result measure_in_child(int64_t n, const std::string& mode,
                        const std::map<std::string, std::string>& flags,
                        const ops::OpsOptions& ops) {
  std::vector<std::string> args{"/proc/self/exe",  "train",   "--passes",
                                std::to_string(n), "--modes", mode};
  for (const auto& [k, v] : flags) {
    if (k == "--passes" || k == "--modes") continue;
    args.push_back(k);
    if (!v.empty()) args.push_back(v);
  }
  for (const std::string& o : ops_overrides(ops)) args.push_back(o);
  args.push_back("--child");
  const ChildResult child = run_self(args, "train");
  Result r;
  long long passes = 0;
  if (!child.ok || std::sscanf(child.output.c_str(), "RESULT %lld %lf %lf %lf", &passes, &r.step_ms,
                               &r.tokens_per_s, &r.peak_mb) != 4) {
    throw std::runtime_error("train: the child for N = " + std::to_string(n) + " (" + mode +
                             ") failed:\n" + child.output);
  }
  r.n_passes = passes;
  return r;
}

}  // namespace

int run_train_bench(const std::map<std::string, std::string>& flags,
                    const std::vector<std::string>& overrides) {
  const ops::OpsOptions ops = ops_from_overrides(overrides);
  auto get = [&](const std::string& k, const std::string& d) {
    auto it = flags.find(k);
    return it == flags.end() ? d : it->second;
  };
  const bool quick = flags.count("--quick") > 0;
  const auto passes = parse_list(get("--passes", "1,2,4"));
  const int64_t batch = parse_positive("--batch", get("--batch", quick ? "32" : "512"));
  const int64_t repeats = parse_positive("--repeats", get("--repeats", quick ? "3" : "10"));
  const std::string dev = get("--device", torch::cuda::is_available() ? "cuda" : "cpu");
  if (dev != "cpu" && dev != "cuda") throw std::invalid_argument("--device expects cpu or cuda");
  if (dev == "cuda" && !torch::cuda::is_available()) {
    throw std::invalid_argument("--device cuda: no CUDA device is available");
  }
  const at::Device device = dev == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  std::vector<std::string> modes;
  {
    std::stringstream ss(get("--modes", dev == "cuda" ? "graph,eager" : "eager"));
    for (std::string m; std::getline(ss, m, ',');) {
      if (m != "graph" && m != "eager") {
        throw std::invalid_argument("--modes expects a list of graph and eager, got '" + m + "'");
      }
      if (m == "graph" && dev != "cuda") {
        throw std::invalid_argument("--modes graph: CUDA graphs need --device cuda");
      }
      modes.push_back(m);
    }
    if (modes.empty()) throw std::invalid_argument("--modes: empty list");
  }
  if (flags.count("--child")) {
    const Result r =
        measure(passes.at(0), batch, device, repeats, modes.at(0) == "graph",
                /*update=*/flags.count("--no-update") == 0, flags.count("--profile") > 0, ops);
    std::printf("RESULT %lld %.17g %.17g %.17g\n", static_cast<long long>(r.n_passes), r.step_ms,
                r.tokens_per_s, r.peak_mb);
    return 0;
  }
  std::printf(
      "Rule 110 paper model (AGAG, d_model 256, 4 heads, window 24, T 100), batch %lld, %s (%s), "
      "%s, median of %lld steps; one process per N\n",
      static_cast<long long>(batch), dev.c_str(), dev == "cuda" ? "bf16 autocast" : "fp32",
      flags.count("--no-update") ? "forward + backward only" : "full training steps",
      static_cast<long long>(repeats));
  std::printf("%6s %4s %12s %14s %12s %22s\n", "mode", "N", "step ms", "tokens/s", "peak MiB",
              "tok/s(N)*N/tok/s(1)");
  for (const auto& mode : modes) {
    double base = 0;
    for (int64_t n : passes) {
      const Result r = measure_in_child(n, mode, flags, ops);
      if (n == passes.front()) base = r.tokens_per_s * static_cast<double>(n);
      std::printf("%6s %4lld %12.2f %14.4g %12.1f %22.3f\n", mode.c_str(),
                  static_cast<long long>(n), r.step_ms, r.tokens_per_s, r.peak_mb,
                  r.tokens_per_s * static_cast<double>(n) / base);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace hypnos::bench
