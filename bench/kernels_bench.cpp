// Benchmark of the gated delta rule backends on one GPU: each measurement is the median of
// individually event-timed runs after warm-up, and the ATen chunked backend is measured in the same
// process as the baseline, so figures from one run compare like with like.
#include "bench/kernels_bench.h"

#include <cstdio>

#include "bench/ops_overrides.h"

#ifdef HYPNOS_WITH_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/profile.h"
#include "bench/timing.h"
#include "cuda/gated_delta_rule_cuda.h"
#include "hypnos/ops/gated_delta_rule.h"
#endif  // HYPNOS_WITH_CUDA_KERNELS

namespace hypnos::bench {
#ifdef HYPNOS_WITH_CUDA_KERNELS
namespace {

struct Shape {
  int64_t batch, seq_len, heads, dim_k, dim_v;
  /// Packed sequences of these lengths (B = 1, seq_len their sum, cu_seqlens), or none.
  std::vector<int64_t> packed = {};
};

/// `count` packed sequences of lengths evenly spaced from lo to hi (rounded), H heads of (K, V):
/// the packed batch bench/fla_compare.py times too.
Shape packed_shape(int64_t count, int64_t lo, int64_t hi, int64_t heads, int64_t dim_k,
                   int64_t dim_v) {
  Shape s{1, 0, heads, dim_k, dim_v};
  for (int64_t i = 0; i < count; ++i) {
    s.packed.push_back(count == 1 ? lo : lo + ((hi - lo) * i + (count - 1) / 2) / (count - 1));
    s.seq_len += s.packed.back();
  }
  return s;
}

// docs/delta_rule.md section 4, per token and head: 6CK + 4CV + 6KV + C^2/3.
double forward_flops(const Shape& s) {
  const double c = double(ops::kGdnChunk), k = double(s.dim_k), v = double(s.dim_v);
  return 6 * c * k + 4 * c * v + 6 * k * v + c * c / 3;
}
// Minimal bytes: bf16 q, k (K), v, o (V) (and dO, dq, dk, dv), fp32 g (and dg), bf16 beta (and
// dbeta).
double forward_bytes(const Shape& s) {
  return 2.0 * (2 * s.dim_k + 2 * s.dim_v) + 4 + 2;
}
double backward_bytes(const Shape& s) {
  return forward_bytes(s) + 2.0 * (2 * s.dim_k + s.dim_v) + 4 + 2;
}

struct Timing {
  double fwd_ms = -1, fwdbwd_ms = -1;
};

// With `profile`, one more forward and one more forward+backward run under Kineto afterwards: the
// time of each kernel (prep against scan, for instance), which the event-timed medians cannot
// split.
Timing measure(const Shape& s, const ops::OpsOptions& ops, int reps, bool profile = false) {
  at::Generator gen = at::cuda::detail::createCUDAGenerator();
  gen.set_current_seed(1234);
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  const int64_t B = s.batch, T = s.seq_len, H = s.heads, K = s.dim_k, V = s.dim_v;
  auto unit_rows = [](const at::Tensor& x) { return x / x.norm(2, {-1}, /*keepdim=*/true); };
  auto leaf = [](const at::Tensor& x) { return x.detach().contiguous().requires_grad_(true); };
  const at::Tensor q = leaf(unit_rows(at::randn({B, T, H, K}, gen, cuda)).to(at::kBFloat16));
  const at::Tensor k = leaf(unit_rows(at::randn({B, T, H, K}, gen, cuda)).to(at::kBFloat16));
  const at::Tensor v = leaf(at::randn({B, T, H, V}, gen, cuda).to(at::kBFloat16));
  const at::Tensor g = leaf(at::log_sigmoid(at::randn({B, T, H}, gen, cuda)));
  const at::Tensor beta = leaf(at::sigmoid(at::randn({B, T, H}, gen, cuda)).to(at::kBFloat16));
  const at::Tensor grad_o = at::randn({B, T, H, V}, gen, cuda).to(at::kBFloat16);
  // Offsets on the device, as a Python caller of fla passes them.
  std::optional<at::Tensor> cu_seqlens;
  if (!s.packed.empty()) {
    std::vector<int64_t> offsets{0};
    for (const int64_t n : s.packed) offsets.push_back(offsets.back() + n);
    cu_seqlens = at::tensor(offsets, at::TensorOptions().dtype(at::kLong)).to(at::kCUDA);
  }
  auto forward = [&] {
    at::NoGradGuard no_grad;
    ops::gated_delta_rule(q, k, v, g, beta, std::nullopt, -1.0, ops, cu_seqlens);
  };
  auto forward_backward = [&] {
    const ops::GatedDeltaRuleOutput out =
        ops::gated_delta_rule(q, k, v, g, beta, std::nullopt, -1.0, ops, cu_seqlens);
    torch::autograd::backward({out.o}, {grad_o});
  };
  Timing t;
  t.fwd_ms = median_ms(forward, reps, 3);
  t.fwdbwd_ms = median_ms(forward_backward, reps, 3);
  if (profile) {
    const std::string shape = std::to_string(B) + "x" + std::to_string(T) + "x" +
                              std::to_string(H) + "x" + std::to_string(K) + "x" + std::to_string(V);
    const ProfileRows rows{/*device=*/12, /*host=*/0};
    print_profile(shape + " fwd", forward, rows);
    print_profile(shape + " fwd+bwd", forward_backward, rows);
  }
  return t;
}

// "--shape B,T,H,D" (K = V = D) or "B,T,H,K,V": one shape instead of the standard list (a profiler
// run of one shape, or a shape of one's own model). Head dims the kernels are not built for run
// the chunked backend under auto and fail under the cuda rows' explicit backend, naming them.
Shape parse_shape(const std::string& text) {
  std::vector<int64_t> v;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      v.push_back(std::stoll(item, &used));
      if (used != item.size() || v.back() < 1) v.back() = -1;
    } catch (const std::exception&) {
      v.push_back(-1);
    }
  }
  const bool ok = (v.size() == 4 || v.size() == 5) &&
                  std::all_of(v.begin(), v.end(), [](int64_t x) { return x > 0; });
  if (!ok) {
    throw std::invalid_argument("--shape expects B,T,H,D or B,T,H,K,V (positive integers), got '" +
                                text + "'");
  }
  return {v[0], v[1], v[2], v[3], v.size() == 5 ? v[4] : v[3]};
}

void print_row(const Shape& s, const char* name, const Timing& t) {
  const double tokens = double(s.batch) * s.seq_len, th = tokens * s.heads;
  const double f = forward_flops(s) * th;
  const double fb = forward_bytes(s) * th, bb = backward_bytes(s) * th;
  const std::string dims = s.dim_k == s.dim_v
                               ? std::to_string(s.dim_k)
                               : std::to_string(s.dim_k) + "," + std::to_string(s.dim_v);
  std::printf(
      "%5lld %6lld %3lld %7s  %-9s | fwd %9.3f ms %8.2f Mtok/s %7.2f TFLOP/s %7.1f GB/s"
      " | fwd+bwd %9.3f ms %8.2f Mtok/s %7.2f TFLOP/s %7.1f GB/s\n",
      (long long)s.batch, (long long)s.seq_len, (long long)s.heads, dims.c_str(), name, t.fwd_ms,
      tokens / t.fwd_ms * 1e-3, f / t.fwd_ms * 1e-9, fb / t.fwd_ms * 1e-6, t.fwdbwd_ms,
      tokens / t.fwdbwd_ms * 1e-3, 3 * f / t.fwdbwd_ms * 1e-9, (fb + bb) / t.fwdbwd_ms * 1e-6);
  std::fflush(stdout);
}

}  // namespace

int run_kernels_bench(const std::map<std::string, std::string>& flags,
                      const std::vector<std::string>& overrides) {
  // The CUDA rows run the kernels the overrides choose (model.gdn_kernel, model.gdn_scan_slice);
  // the backend is set per row.
  ops::OpsOptions cuda_ops = ops_from_overrides(overrides);
  cuda_ops.gdn_backend = ops::GdnBackend::kCuda;
  const int reps = reps_flag(flags, 20);
  const bool baseline = flags.count("--no-baseline") == 0, quick = flags.count("--quick") > 0;
  const bool fp32_too = flags.count("--fp32-too") > 0, profile = flags.count("--profile") > 0;
  // Then Jet-Nemotron-2B's JetBlock over a 2,000-token window (K = 96, V = 256), and a packed batch
  // of 8 GSM-Infinite-length problems.
  std::vector<Shape> shapes = {{8, 4096, 16, 128, 128},
                               {8, 1024, 16, 128, 128},
                               {1, 16384, 16, 128, 128},
                               {512, 24, 4, 64, 64},
                               {128, 75, 8, 64, 64},
                               {8, 2000, 12, 96, 256},
                               packed_shape(8, 2000, 3300, 16, 128, 128)};
  if (quick) shapes = {{512, 24, 4, 64, 64}, {128, 75, 8, 64, 64}};
  if (const auto it = flags.find("--shape"); it != flags.end()) shapes = {parse_shape(it->second)};
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "hypnos_bench kernels: no CUDA device\n");
    return 1;
  }
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  std::printf(
      "bench kernels on %s: bf16 q, k, v, beta; fp32 g; median of %d after 3 warm-up; "
      "fwd without grad, fwd+bwd with .backward(dO)\n",
      prop->name, reps);
  std::printf("    B      T   H     K,V  backend   |\n");
  // --fp32-too also times the CUDA-core kernels, with the same scan width.
  const char* cuda_name = cuda_ops.gdn_kernel == ops::GdnKernel::kFp32 ? "cuda-fp32" : "cuda-tc";
  ops::OpsOptions fp32_ops = cuda_ops;
  fp32_ops.gdn_kernel = ops::GdnKernel::kFp32;
  ops::OpsOptions chunked_ops;
  chunked_ops.gdn_backend = ops::GdnBackend::kChunked;
  for (const Shape& s : shapes) {
    if (!s.packed.empty()) {
      std::printf("packed (B = 1, cu_seqlens): %zu sequences of %lld to %lld tokens\n",
                  s.packed.size(), (long long)s.packed.front(), (long long)s.packed.back());
    }
    print_row(s, cuda_name, measure(s, cuda_ops, reps, profile));
    if (fp32_too) print_row(s, "cuda-fp32", measure(s, fp32_ops, reps));
    if (baseline) print_row(s, "chunked", measure(s, chunked_ops, reps));
    c10::cuda::CUDACachingAllocator::emptyCache();
  }
  return 0;
}

#else
int run_kernels_bench(const std::map<std::string, std::string>&,
                      const std::vector<std::string>& overrides) {
  ops_from_overrides(overrides);  // a bad key is still a usage error
  std::fprintf(stderr, "hypnos_bench kernels: built without the CUDA kernels (HYPNOS_CUDA)\n");
  return 1;
}
#endif  // HYPNOS_WITH_CUDA_KERNELS

}  // namespace hypnos::bench
