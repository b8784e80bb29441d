// Benchmark of the gated delta rule's CPU backends: each figure is the median of timed runs after
// one warm-up, both backends on the same inputs in the same process.
#include "bench/ops_bench.h"

#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "bench/reps_flag.h"
#include "hypnos/ops/gated_delta_rule.h"

namespace hypnos::bench {
namespace {

struct Shape {
  int64_t B, T, H, K, V;
};

struct Millis {
  double wall = 0, cpu = 0;  // cpu: process CPU time, all threads
};

// Median over `reps` runs after one warm-up, wall and process CPU time separately.
Millis median_ms(const std::function<void()>& body, int reps) {
  body();
  std::vector<double> wall, cpu;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    body();
    cpu.push_back(1e3 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
    wall.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

// {q, k, v, g, beta, initial_state} in fla's test distribution: unit-norm q and k,
// g = logsigmoid(randn) / 4, beta in (0, 1); fp32.
std::vector<at::Tensor> make_inputs(const Shape& s) {
  torch::manual_seed(81);
  auto unit = [](const at::Tensor& x) { return x / x.norm(2, -1, /*keepdim=*/true); };
  return {unit(at::randn({s.B, s.T, s.H, s.K})),
          unit(at::randn({s.B, s.T, s.H, s.K})),
          at::randn({s.B, s.T, s.H, s.V}),
          at::log_sigmoid(at::randn({s.B, s.T, s.H})) / 4.0,
          at::rand({s.B, s.T, s.H}),
          0.3 * at::randn({s.B, s.H, s.K, s.V})};
}

}  // namespace

int run_ops_bench(const std::map<std::string, std::string>& flags) {
  const int reps = reps_flag(flags, 5);
  // The sleep window of the Rule 110 paper model at batch 64, and a long sequence.
  std::vector<Shape> shapes = {{64, 24, 4, 64, 64}, {4, 1024, 4, 64, 64}};
  if (flags.count("--quick")) shapes.resize(1);
  std::printf(
      "ops on the CPU: gated delta rule, fp32, with an initial state; median of %d after 1 "
      "warm-up, %d threads; fwd without grad, fwd+bwd with the gradient of every input\n",
      reps, at::get_num_threads());
  std::printf("%5s %6s %3s %4s %4s  %-9s | %12s %12s | %12s %12s\n", "B", "T", "H", "K", "V",
              "backend", "fwd ms", "fwd CPU ms", "f+b ms", "f+b CPU ms");
  for (const Shape& s : shapes) {
    const std::vector<at::Tensor> in = make_inputs(s);
    const at::Tensor d_o = at::randn({s.B, s.T, s.H, s.V});
    const at::Tensor d_state = at::randn({s.B, s.H, s.K, s.V});
    for (const ops::GdnBackend backend : {ops::GdnBackend::kChunked, ops::GdnBackend::kReference}) {
      const ops::OpsOptions options{.gdn_backend = backend};
      const Millis fwd = median_ms(
          [&] {
            at::NoGradGuard no_grad;
            ops::gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0, options);
          },
          reps);
      std::vector<at::Tensor> leaves;
      for (const at::Tensor& x : in) leaves.push_back(x.detach().clone().requires_grad_(true));
      const Millis fwd_bwd = median_ms(
          [&] {
            const auto out = ops::gated_delta_rule(leaves[0], leaves[1], leaves[2], leaves[3],
                                                   leaves[4], leaves[5], -1.0, options);
            const at::Tensor loss = (out.o * d_o).sum() + (out.final_state * d_state).sum();
            torch::autograd::grad({loss}, leaves);
          },
          reps);
      std::printf("%5lld %6lld %3lld %4lld %4lld  %-9s | %12.2f %12.2f | %12.2f %12.2f\n",
                  (long long)s.B, (long long)s.T, (long long)s.H, (long long)s.K, (long long)s.V,
                  std::string(ops::gdn_backend_name(backend)).c_str(), fwd.wall, fwd.cpu,
                  fwd_bwd.wall, fwd_bwd.cpu);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace hypnos::bench
