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

// Packed variable-length sequences through the chunked backend, three ways on the same tokens:
// packed (B = 1, cu_seqlens, one pass), padded to the longest (B = N, zeros after each sequence:
// g = 0, beta = 0 there is exact) and one call per sequence. H = 4, K = V = 64, fp32.
// The one-pass ways allocate temporaries of tens of MB, which glibc may hand back to the system
// after each run and fault in again on the next (measured: packed forward+backward 902 ms against
// 557 ms with MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set high); per-sequence calls
// reuse smaller blocks. Compare the ways under the same allocator settings.
void run_packed(const std::vector<int64_t>& lengths, int reps) {
  const int64_t N = static_cast<int64_t>(lengths.size()), H = 4, K = 64, V = 64;
  std::vector<int64_t> cu = {0};
  for (int64_t n : lengths) cu.push_back(cu.back() + n);
  const int64_t T = cu.back(), longest = *std::max_element(lengths.begin(), lengths.end());
  const std::vector<at::Tensor> packed = make_inputs({1, T, H, K, V});  // initial_state [1, ...]
  const at::Tensor h0 = 0.3 * at::randn({N, H, K, V});
  const at::Tensor cu_seqlens = at::tensor(cu, at::TensorOptions().dtype(at::kLong));
  const at::Tensor d_o = at::randn({1, T, H, V}), d_state = at::randn({N, H, K, V});
  const ops::OpsOptions chunked{.gdn_backend = ops::GdnBackend::kChunked};

  // Sequence i of a packed [1, T, ...] tensor, and all of them zero-padded to [N, longest, ...].
  const auto piece = [&](const at::Tensor& x, int64_t i) { return x.narrow(1, cu[i], lengths[i]); };
  const auto padded = [&](const at::Tensor& x) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = N;
    shape[1] = longest;
    at::Tensor y = at::zeros(shape, x.options());
    for (int64_t i = 0; i < N; ++i) y[i].narrow(0, 0, lengths[i]).copy_(piece(x, i)[0]);
    return y;
  };

  // Each way: inputs (q, k, v, g, beta, h0) -> the loss <o, d_o> + <S, d_state> over the real
  // tokens (the padded way's loss reads only each sequence's own positions).
  using Way = std::function<at::Tensor(const std::vector<at::Tensor>&)>;
  const at::Tensor d_o_padded = padded(d_o);
  const Way packed_way = [&](const std::vector<at::Tensor>& x) {
    const auto out =
        ops::gated_delta_rule(x[0], x[1], x[2], x[3], x[4], x[5], -1.0, chunked, cu_seqlens);
    return (out.o * d_o).sum() + (out.final_state * d_state).sum();
  };
  const Way padded_way = [&](const std::vector<at::Tensor>& x) {
    const auto out = ops::gated_delta_rule(x[0], x[1], x[2], x[3], x[4], x[5], -1.0, chunked);
    return (out.o * d_o_padded).sum() + (out.final_state * d_state).sum();
  };
  const Way loop_way = [&](const std::vector<at::Tensor>& x) {
    at::Tensor loss = at::zeros({}, x[0].options());
    for (int64_t i = 0; i < N; ++i) {
      const auto out =
          ops::gated_delta_rule(piece(x[0], i), piece(x[1], i), piece(x[2], i), piece(x[3], i),
                                piece(x[4], i), x[5].narrow(0, i, 1), -1.0, chunked);
      loss = loss + (out.o * piece(d_o, i)).sum() + (out.final_state * d_state[i]).sum();
    }
    return loss;
  };
  std::vector<at::Tensor> packed_in(packed.begin(), packed.begin() + 5);
  packed_in.push_back(h0);
  std::vector<at::Tensor> padded_in;
  for (size_t a = 0; a < 5; ++a) padded_in.push_back(padded(packed[a]));
  padded_in.push_back(h0);

  std::printf(
      "\npacked sequences, chunked backend, fp32: %lld sequences of %lld to %lld tokens (%lld in "
      "all), H = %lld, K = V = %lld; median of %d after 1 warm-up\n",
      (long long)N, (long long)*std::min_element(lengths.begin(), lengths.end()),
      (long long)longest, (long long)T, (long long)H, (long long)K, reps);
  std::printf("%-13s %8s | %12s %12s | %12s %12s\n", "way", "tokens", "fwd ms", "fwd CPU ms",
              "f+b ms", "f+b CPU ms");
  const struct {
    const char* name;
    const Way& way;
    const std::vector<at::Tensor>& in;
    int64_t positions;  // token positions computed
  } ways[] = {{"packed", packed_way, packed_in, T},
              {"padded", padded_way, padded_in, N * longest},
              {"per-sequence", loop_way, packed_in, T}};
  // One untimed forward+backward of every way first: the allocator then holds memory for the
  // largest of them, so that the first way timed does not pay the page faults of all three.
  for (const auto& w : ways) {
    std::vector<at::Tensor> leaves;
    for (const at::Tensor& x : w.in) leaves.push_back(x.detach().clone().requires_grad_(true));
    torch::autograd::grad({w.way(leaves)}, leaves);
  }
  for (const auto& w : ways) {
    const Millis fwd = median_ms(
        [&] {
          at::NoGradGuard no_grad;
          w.way(w.in);
        },
        reps);
    std::vector<at::Tensor> leaves;
    for (const at::Tensor& x : w.in) leaves.push_back(x.detach().clone().requires_grad_(true));
    const Millis fwd_bwd = median_ms([&] { torch::autograd::grad({w.way(leaves)}, leaves); }, reps);
    std::printf("%-13s %8lld | %12.2f %12.2f | %12.2f %12.2f\n", w.name, (long long)w.positions,
                fwd.wall, fwd.cpu, fwd_bwd.wall, fwd_bwd.cpu);
    std::fflush(stdout);
  }
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
  if (flags.count("--packed")) {
    // Long sequences (8 of 2,000 to 3,300 tokens), then many short ones (64 of 16 to 300, an
    // evaluation batch of examples of different lengths); --quick shortens both 20x.
    const int64_t div = flags.count("--quick") ? 20 : 1;
    std::vector<int64_t> long_ones, short_ones;
    for (int64_t n : {2000, 3300, 2400, 2900, 2100, 3100, 2600, 2200}) long_ones.push_back(n / div);
    for (int64_t i = 0; i < 64; ++i)
      short_ones.push_back(std::max<int64_t>(1, (16 + i * 37 % 285) / div));
    run_packed(long_ones, reps);
    run_packed(short_ones, reps);
  }
  return 0;
}

}  // namespace hypnos::bench
