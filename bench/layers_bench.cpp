// Benchmark of the fused layer kernels against the ATen compositions they replace, at the shapes
// one window of the Rule 110 paper model's sleep training runs (batch 512, window 24, d_model 256,
// 4 heads of 64): what each fusion saves per layer call, forward and forward+backward.
#include "bench/layers_bench.h"

#include <cstdio>

#ifdef HYPNOS_WITH_CUDA_KERNELS
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include <functional>
#include <optional>
#include <vector>

#include "bench/timing.h"
#include "cuda/gdn_fused_cuda.h"
#include "cuda/rope_cuda.h"
#include "cuda/swiglu_cuda.h"
#include "hypnos/nn/rope.h"
#include "nn/rope_composition.h"
#include "ops/gdn_fused.h"
#include "train/autocast_guard.h"
#endif  // HYPNOS_WITH_CUDA_KERNELS

namespace hypnos::bench {
#ifdef HYPNOS_WITH_CUDA_KERNELS
namespace {

using Outputs = std::vector<at::Tensor>;

/// One op: its differentiable inputs and how to run it fused or as the composition.
struct OpCase {
  const char* name;
  std::string shape;
  std::vector<at::Tensor> leaves;
  std::function<std::optional<Outputs>(bool fused)> run;  // nullopt: the kernel refused
};

struct Timing {
  double fwd_ms = -1, fwdbwd_ms = -1;
};

std::optional<Timing> measure(const OpCase& op, bool fused, int reps) {
  const at::Device cuda(at::kCUDA);
  std::optional<Outputs> probe;
  {
    const train::AutocastGuard autocast(true, cuda);
    probe = op.run(fused);
  }
  if (!probe) return std::nullopt;
  Outputs grads;
  for (const at::Tensor& o : *probe) grads.push_back(at::randn_like(o));
  Timing t;
  t.fwd_ms = median_ms(
      [&] {
        at::NoGradGuard no_grad;
        const train::AutocastGuard autocast(true, cuda);
        op.run(fused);
      },
      reps, 3);
  t.fwdbwd_ms = median_ms(
      [&] {
        Outputs outs;
        {
          const train::AutocastGuard autocast(true, cuda);
          outs = *op.run(fused);
        }
        torch::autograd::grad(outs, op.leaves, grads, /*retain_graph=*/false,
                              /*create_graph=*/false, /*allow_unused=*/true);
      },
      reps, 3);
  return t;
}

/// A [B, T, C] slice at column `offset` of a wider leaf, like the parts of a fused projection.
at::Tensor slice_of(const at::Tensor& wide, int64_t offset, int64_t width) {
  return wide.narrow(-1, offset, width);
}

std::vector<OpCase> cases() {
  const int64_t B = 512, T = 24, D = 256, H = 4, K = 64, F = 688, W = 4;
  const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const auto f32 = bf16.dtype(at::kFloat);
  auto leaf = [](at::Tensor t) { return t.requires_grad_(true); };
  std::vector<OpCase> ops;
  {  // the GatedDeltaNet projection's q | k | v part, the conv weights and the window-start cache
    const at::Tensor proj = leaf(at::randn({B, T, 4 * H * K + 2 * H}, bf16));
    const at::Tensor w = leaf(at::randn({3 * H * K, 1, W}, f32) * 0.5);
    const at::Tensor cache = leaf(at::randn({B, W - 1, 3 * H * K}, bf16));
    ops.push_back({"conv+SiLU", "[512, 24, 768] W 4", {proj, w, cache}, [=](bool fused) {
                     const at::Tensor x = slice_of(proj, 0, 3 * H * K);
                     auto out =
                         fused
                             ? ops::fused::cuda::causal_conv_silu(x, w, cache)
                             : std::optional(ops::fused::reference::causal_conv_silu(x, w, cache));
                     if (!out) return std::optional<Outputs>();
                     return std::optional<Outputs>({out->first, out->second});
                   }});
  }
  {  // JetBlock: v and its per-token kernels (the kernel_up projection's output)
    const at::Tensor proj = leaf(at::randn({B, T, 4 * H * K + 2 * H}, bf16));
    const at::Tensor kernel = leaf(at::randn({B, T, H * K, W}, bf16) * 0.5);
    const at::Tensor cache = leaf(at::randn({B, W - 1, H * K}, bf16));
    ops.push_back({"dynamic conv", "[512, 24, 256] W 4", {proj, kernel, cache}, [=](bool fused) {
                     const at::Tensor x = slice_of(proj, 2 * H * K, H * K);
                     auto out = fused ? ops::fused::cuda::dynamic_conv_silu(x, kernel, cache)
                                      : std::optional(ops::fused::reference::dynamic_conv_silu(
                                            x, kernel, cache));
                     if (!out) return std::optional<Outputs>();
                     return std::optional<Outputs>({out->first, out->second});
                   }});
  }
  {
    const at::Tensor qkv = leaf(at::randn({B, T, 3 * H * K}, bf16));
    ops.push_back({"L2 norm (q)", "[512, 24, 4, 64]", {qkv}, [=](bool fused) {
                     const at::Tensor q = slice_of(qkv, 0, H * K);
                     auto y = fused ? ops::fused::cuda::l2_normalize_heads(q, H, false)
                                    : std::optional(
                                          ops::fused::reference::l2_normalize_heads(q, H, false));
                     return y ? std::optional<Outputs>({*y}) : std::nullopt;
                   }});
  }
  {
    const at::Tensor ab = leaf(at::randn({B, T, 2 * H + 5}, bf16));
    const at::Tensor A_log = leaf(at::rand({H}, f32) * 2.7);
    const at::Tensor dt_bias = leaf(at::randn({H}, f32));
    ops.push_back({"gates", "[512, 24, 4]", {ab, A_log, dt_bias}, [=](bool fused) {
                     const at::Tensor a = slice_of(ab, 0, H), b = slice_of(ab, H, H);
                     auto gb = fused ? ops::fused::cuda::gdn_gates(a, b, A_log, dt_bias)
                                     : std::optional(
                                           ops::fused::reference::gdn_gates(a, b, A_log, dt_bias));
                     return gb ? std::optional<Outputs>({gb->first, gb->second}) : std::nullopt;
                   }});
  }
  {
    const at::Tensor o = leaf(at::randn({B, T, H, K}, bf16));
    const at::Tensor gate = leaf(at::randn({B, T, 2 * H * K}, bf16));
    const at::Tensor weight = leaf(at::ones({K}, f32));
    ops.push_back({"gated RMSNorm", "[512, 24, 4, 64]", {o, gate, weight}, [=](bool fused) {
                     const at::Tensor g = slice_of(gate, H * K, H * K);
                     auto y = fused ? ops::fused::cuda::gated_rms_norm(o, g, weight, 1e-6)
                                    : std::optional(ops::fused::reference::gated_rms_norm(
                                          o, g, weight, 1e-6));
                     return y ? std::optional<Outputs>({*y}) : std::nullopt;
                   }});
  }
  {
    const at::Tensor qkv = leaf(at::randn({B, T, 3 * D}, bf16));
    const nn::RopeTable table = nn::rope_table(0, T, K, 10000.0, f32);
    ops.push_back({"RoPE (k)", "[512, 4, 24, 64]", {qkv}, [=](bool fused) {
                     const at::Tensor k = slice_of(qkv, D, D).view({B, T, H, K}).transpose(1, 2);
                     auto y = fused ? nn::detail::apply_rope_cuda(k, table)
                                    : std::optional(nn::detail::apply_rope_composition(k, table));
                     return y ? std::optional<Outputs>({*y}) : std::nullopt;
                   }});
  }
  {
    const at::Tensor h = leaf(at::randn({B, T, 2 * F}, bf16));
    ops.push_back({"SwiGLU gate", "[512, 24, 2 x 688]", {h}, [=](bool fused) {
                     if (fused) {
                       auto y = nn::detail::silu_mul_cuda(h);
                       return y ? std::optional<Outputs>({*y}) : std::nullopt;
                     }
                     const auto gu = h.split(F, -1);
                     return std::optional<Outputs>({at::silu(gu[0]) * gu[1]});
                   }});
  }
  {  // the residual stream is fp32; the composition is RMSNorm's six-op formula before at::rms_norm
    const at::Tensor x = leaf(at::randn({B, T, D}, f32));
    const at::Tensor weight = leaf(at::ones({D}, f32));
    ops.push_back({"RMSNorm", "[512, 24, 256] fp32", {x, weight}, [=](bool fused) {
                     if (fused)
                       return std::optional<Outputs>({ops::fused::rms_norm(x, weight, 1e-6)});
                     return std::optional<Outputs>(
                         {x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-6) * weight});
                   }});
  }
  return ops;
}

}  // namespace

int run_layers_bench(const std::map<std::string, std::string>& flags) {
  const int reps = reps_flag(flags, 50);
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "hypnos_bench layers: no CUDA device\n");
    return 1;
  }
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  std::printf(
      "bench layers on %s: one window of the Rule 110 paper model (batch 512, window 24, d_model "
      "256, 4 heads of 64), bf16 under CUDA autocast; median of %d after 3 warm-up\n",
      prop->name, reps);
  std::printf("%-14s %-22s | %10s %10s | %10s %10s | %8s %8s\n", "op", "shape", "fused fwd",
              "fused f+b", "ATen fwd", "ATen f+b", "fwd x", "f+b x");
  for (const OpCase& op : cases()) {
    const auto fused = measure(op, true, reps), aten = measure(op, false, reps);
    if (!fused || !aten) {
      std::printf("%-14s %-22s | the fused kernel refused these inputs\n", op.name,
                  op.shape.c_str());
      continue;
    }
    std::printf("%-14s %-22s | %7.3f ms %7.3f ms | %7.3f ms %7.3f ms | %7.2fx %7.2fx\n", op.name,
                op.shape.c_str(), fused->fwd_ms, fused->fwdbwd_ms, aten->fwd_ms, aten->fwdbwd_ms,
                aten->fwd_ms / fused->fwd_ms, aten->fwdbwd_ms / fused->fwdbwd_ms);
    std::fflush(stdout);
  }
  return 0;
}

#else
int run_layers_bench(const std::map<std::string, std::string>&) {
  std::fprintf(stderr, "hypnos_bench layers: built without the CUDA kernels (HYPNOS_CUDA)\n");
  return 1;
}
#endif  // HYPNOS_WITH_CUDA_KERNELS

}  // namespace hypnos::bench
