// The fused layer ops (src/ops/gdn_fused.h): on the CPU their compositions against central
// differences in double; on a GPU the fused kernels against those compositions run in fp32 on
// upcast copies of the same inputs (outputs and every input gradient), over awkward shapes, strided
// inputs (slices of a wider projection), zero rows, softplus past its threshold, and T shorter than
// the convolution's context. The GPU tests skip without a device.
#include "ops/gdn_fused.h"

#ifdef HYPNOS_WITH_CUDA_KERNELS
#include "cuda/gdn_fused_cuda.h"
#endif

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "hypnos/nn/gated_delta_net.h"
#include "hypnos/nn/jet_block.h"
#include "testing/cuda.h"
#include "testing/numeric.h"
#include "train/autocast_guard.h"

namespace hypnos::ops::fused {
namespace {

using testing::relative_error;

/// A [B, T, C] slice of a wider [B, T, C + 7] tensor at column 3: channels contiguous, rows not;
/// differentiable with respect to `dense`.
at::Tensor strided(const at::Tensor& dense) {
  const int64_t B = dense.size(0), T = dense.size(1), C = dense.size(2);
  const auto options = dense.options().requires_grad(false);
  return at::cat({at::randn({B, T, 3}, options), dense, at::randn({B, T, 4}, options)}, -1)
      .narrow(-1, 3, C);
}

TEST(GdnFusedReference, CompositionsMatchCentralDifferencesInDouble) {
  torch::manual_seed(0);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, T = 3, H = 2, D = 4, W = 4;
  auto expect_small = [](const std::vector<double>& errors, const char* op) {
    for (size_t i = 0; i < errors.size(); ++i) EXPECT_LT(errors[i], 1e-7) << op << " input " << i;
  };
  // T = 3 = W - 1: the new cache is x itself.
  expect_small(
      testing::gradient_check_errors(
          [&](const std::vector<at::Tensor>& in) {
            auto [y, cache] = reference::causal_conv_silu(in[0], in[1], in[2]);
            return (y * y).sum() + (cache * cache * 0.5).sum();
          },
          {at::randn({B, T, 5}, f64), at::randn({5, 1, W}, f64), at::randn({B, W - 1, 5}, f64)}),
      "causal_conv_silu");
  expect_small(testing::gradient_check_errors(
                   [&](const std::vector<at::Tensor>& in) {
                     return (reference::l2_normalize_heads(in[0], H, true) *
                             at::arange(H * D, f64).view({H, D}))
                         .sum();
                   },
                   {at::randn({B, T, H * D}, f64)}),
               "l2_normalize_heads");
  expect_small(testing::gradient_check_errors(
                   [&](const std::vector<at::Tensor>& in) {
                     auto [g, beta] = reference::gdn_gates(in[0], in[1], in[2], in[3]);
                     return (g * g).sum() + (beta * at::arange(H, f64)).sum();
                   },
                   {at::randn({B, T, H}, f64), at::randn({B, T, H}, f64), at::randn({H}, f64),
                    at::randn({H}, f64)}),
               "gdn_gates");
  expect_small(
      testing::gradient_check_errors(
          [&](const std::vector<at::Tensor>& in) {
            const at::Tensor y = reference::gated_rms_norm(in[0], in[1], in[2], 1e-6);
            return (y * at::arange(H * D, f64)).sum();
          },
          {at::randn({B, T, H, D}, f64), at::randn({B, T, H * D}, f64), at::randn({D}, f64)}),
      "gated_rms_norm");
}

TEST(GdnFused, CpuTensorsTakeTheCompositions) {
  torch::manual_seed(1);
  const at::Tensor x = at::randn({2, 5, 12}), w = at::randn({12, 1, 4});
  EXPECT_TRUE(
      at::equal(causal_conv_silu(x, w, {}).first, reference::causal_conv_silu(x, w, {}).first));
  EXPECT_TRUE(at::equal(l2_normalize_heads(x, 3, true), reference::l2_normalize_heads(x, 3, true)));
}

// ---------------------------------------------------------------- GPU
#ifdef HYPNOS_WITH_CUDA_KERNELS

/// The fused op's result; a nullopt (the kernels refused the inputs and the dispatcher would have
/// fallen back to the composition) fails the test instead of comparing the composition to itself.
template <class R>
R fused_or_throw(std::optional<R> result, const std::string& op) {
  if (!result) throw std::runtime_error(op + ": the fused kernels did not take these inputs");
  return *result;
}

/// Runs `op` twice: on CUDA leaves in `dtype` with the fused kernels (under CUDA autocast when
/// bf16, as in training) and on fp32 upcasts of the same values with the compositions (the more
/// precise reference). Backpropagates the same random output gradients through both and compares
/// outputs and input gradients; `grad_weight(i)`, when given, scales both gradients of input i
/// elementwise before the comparison (so a few huge entries cannot hide the others).
void expect_fused_matches_reference(
    const std::string& name, const std::vector<at::Tensor>& values, at::ScalarType dtype,
    const std::vector<bool>& param_dtype_fixed,
    const std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&, bool fused)>& op,
    double tol, const std::function<at::Tensor(size_t)>& grad_weight = {}) {
  std::vector<at::Tensor> fused_in, ref_in;
  for (size_t i = 0; i < values.size(); ++i) {
    const at::Tensor v = values[i].to(at::kCUDA);
    fused_in.push_back((param_dtype_fixed[i] ? v : v.to(dtype)).detach().requires_grad_(true));
    ref_in.push_back(fused_in.back().detach().to(at::kFloat).requires_grad_(true));
  }
  std::vector<at::Tensor> fused_out;
  {
    const train::AutocastGuard autocast(dtype == at::kBFloat16, at::Device(at::kCUDA));
    fused_out = op(fused_in, true);
  }
  const std::vector<at::Tensor> ref_out = op(ref_in, false);
  ASSERT_EQ(fused_out.size(), ref_out.size());
  std::vector<at::Tensor> grads;
  for (size_t i = 0; i < ref_out.size(); ++i) {
    EXPECT_LT(relative_error(fused_out[i], ref_out[i]), tol) << name << " output " << i;
    grads.push_back(at::randn(ref_out[i].sizes(), ref_out[i].options()));
  }
  auto backward = [&](const std::vector<at::Tensor>& outs, const std::vector<at::Tensor>& ins) {
    at::Tensor loss = at::zeros({}, outs[0].options().dtype(at::kFloat));
    for (size_t i = 0; i < outs.size(); ++i) {
      loss = loss + (outs[i].to(at::kFloat) * grads[i]).sum();
    }
    return torch::autograd::grad({loss}, ins, {}, false, false, /*allow_unused=*/true);
  };
  const auto fused_grads = backward(fused_out, fused_in);
  const auto ref_grads = backward(ref_out, ref_in);
  for (size_t i = 0; i < ref_in.size(); ++i) {
    ASSERT_TRUE(fused_grads[i].defined()) << name << " no gradient for input " << i;
    EXPECT_TRUE(fused_grads[i].isfinite().all().item<bool>()) << name << " input " << i;
    const at::Tensor w = grad_weight ? grad_weight(i) : at::ones({}, ref_grads[i].options());
    EXPECT_LT(relative_error(fused_grads[i].to(at::kFloat) * w, ref_grads[i] * w), tol)
        << name << " grad input " << i;
  }
}

double tolerance(at::ScalarType dtype) {
  return dtype == at::kFloat ? 2e-5 : 2e-2;
}

struct ConvCase {
  int64_t batch, seq_len, channels;
  int width;
  bool with_cache;
};

TEST(GdnFusedCuda, CausalConvSiluMatchesComposition) {
  HYPNOS_REQUIRE_CUDA();
  const testing::ExactFp32 exact;  // the composition's conv1d would otherwise run cuDNN in TF32
  const ConvCase cases[] = {{3, 37, 80, 4, true}, {2, 1, 24, 4, true},   {2, 2, 24, 4, true},
                            {2, 2, 24, 4, false}, {2, 5, 130, 4, false}, {1, 64, 384, 4, true},
                            {2, 9, 16, 2, true},  {2, 6, 16, 1, false},  {2, 40, 33, 8, true}};
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const ConvCase& c : cases) {
      torch::manual_seed(c.seq_len * 31 + c.channels);
      const int64_t B = c.batch, T = c.seq_len, C = c.channels, W = c.width;
      std::vector<at::Tensor> values = {at::randn({B, T, C}), at::randn({C, 1, W}) * 0.5};
      if (c.with_cache) values.push_back(at::randn({B, W - 1, C}));
      const std::string name = "conv B" + std::to_string(B) + " T" + std::to_string(T) + " C" +
                               std::to_string(C) + " W" + std::to_string(W) +
                               (c.with_cache ? " cache " : " ") + c10::toString(dtype);
      expect_fused_matches_reference(
          name, values, dtype, {false, true, false},
          [&](const std::vector<at::Tensor>& in, bool fused) {
            const at::Tensor x = strided(in[0]);
            const at::Tensor cache = in.size() > 2 ? strided(in[2]) : at::Tensor();
            auto [y, next] = fused ? fused_or_throw(cuda::causal_conv_silu(x, in[1], cache), name)
                                   : reference::causal_conv_silu(x, in[1], cache);
            EXPECT_EQ(y.scalar_type(), x.scalar_type()) << name;
            return W > 1 ? std::vector<at::Tensor>{y, next} : std::vector<at::Tensor>{y};
          },
          tolerance(dtype));
    }
  }
}

TEST(GdnFusedCuda, DynamicConvSiluMatchesComposition) {
  HYPNOS_REQUIRE_CUDA();
  const ConvCase cases[] = {{3, 37, 80, 4, true},
                            {2, 1, 24, 4, true},
                            {2, 2, 24, 4, false},
                            {2, 9, 16, 2, true},
                            {2, 6, 16, 1, false}};
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const ConvCase& c : cases) {
      torch::manual_seed(c.seq_len * 17 + c.channels);
      const int64_t B = c.batch, T = c.seq_len, C = c.channels, W = c.width;
      std::vector<at::Tensor> values = {at::randn({B, T, C}), at::randn({B, T, C, W}) * 0.5};
      if (c.with_cache) values.push_back(at::randn({B, W - 1, C}));
      const std::string name = "dynamic conv T" + std::to_string(T) + " C" + std::to_string(C) +
                               " W" + std::to_string(W) + (c.with_cache ? " cache " : " ") +
                               c10::toString(dtype);
      expect_fused_matches_reference(
          name, values, dtype, {false, false, false},
          [&](const std::vector<at::Tensor>& in, bool fused) {
            const at::Tensor x = strided(in[0]);
            const at::Tensor cache = in.size() > 2 ? strided(in[2]) : at::Tensor();
            auto [y, next] = fused ? fused_or_throw(cuda::dynamic_conv_silu(x, in[1], cache), name)
                                   : reference::dynamic_conv_silu(x, in[1], cache);
            return W > 1 ? std::vector<at::Tensor>{y, next} : std::vector<at::Tensor>{y};
          },
          tolerance(dtype));
    }
  }
}

TEST(GdnFusedCuda, L2NormalizeHeadsMatchesComposition) {
  HYPNOS_REQUIRE_CUDA();
  struct Case {
    int64_t batch, seq_len, heads, dim;
  };
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (bool silu : {false, true}) {
      for (const Case& c :
           {Case{2, 37, 3, 64}, Case{3, 1, 4, 128}, Case{2, 5, 2, 40}, Case{1, 3, 1, 256}}) {
        torch::manual_seed(c.dim + c.seq_len);
        at::Tensor x = at::randn({c.batch, c.seq_len, c.heads * c.dim});
        x.select(1, 0).narrow(-1, 0, c.dim).zero_();  // a zero row: the clamp's branch
        // The zero rows' gradients are dy / 1e-12: weigh them down to the others' scale.
        at::Tensor weight = at::ones({c.batch, c.seq_len, c.heads * c.dim});
        weight.select(1, 0).narrow(-1, 0, c.dim).fill_(1e-12);
        const std::string name =
            "l2norm D" + std::to_string(c.dim) + (silu ? " silu " : " ") + c10::toString(dtype);
        expect_fused_matches_reference(
            name, {x}, dtype, {false},
            [&](const std::vector<at::Tensor>& in, bool fused) {
              const at::Tensor xs = strided(in[0]);
              return std::vector<at::Tensor>{
                  fused ? fused_or_throw(cuda::l2_normalize_heads(xs, c.heads, silu), name)
                        : reference::l2_normalize_heads(xs, c.heads, silu)};
            },
            tolerance(dtype), [&](size_t) { return weight.to(at::kCUDA); });
      }
    }
  }
}

TEST(GdnFusedCuda, GatesMatchComposition) {
  HYPNOS_REQUIRE_CUDA();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t T : {1, 24, 75}) {
      torch::manual_seed(T);
      const int64_t B = 3, H = 5;
      at::Tensor a = at::randn({B, T, H}) * 4.0;
      a.select(2, 1).fill_(25.0);  // softplus past its threshold (linear there)
      const std::string name = "gates T" + std::to_string(T) + " " + c10::toString(dtype);
      expect_fused_matches_reference(
          name, {a, at::randn({B, T, H}) * 3.0, at::rand({H}) * 2.7, at::randn({H})}, dtype,
          {false, false, true, true},
          [&](const std::vector<at::Tensor>& in, bool fused) {
            const at::Tensor as = strided(in[0]), bs = strided(in[1]);
            auto [g, beta] = fused ? fused_or_throw(cuda::gdn_gates(as, bs, in[2], in[3]), name)
                                   : reference::gdn_gates(as, bs, in[2], in[3]);
            EXPECT_EQ(g.scalar_type(), at::kFloat) << name;
            return std::vector<at::Tensor>{g, beta};
          },
          tolerance(dtype));
    }
  }
}

TEST(GdnFusedCuda, GatedRmsNormMatchesComposition) {
  HYPNOS_REQUIRE_CUDA();
  struct Case {
    int64_t batch, seq_len, heads, dim;
  };
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Case& c :
         {Case{2, 37, 3, 64}, Case{3, 1, 4, 128}, Case{512, 24, 4, 64}, Case{2, 5, 2, 48}}) {
      torch::manual_seed(c.dim * 7 + c.seq_len);
      const std::string name = "gated norm B" + std::to_string(c.batch) + " D" +
                               std::to_string(c.dim) + " " + c10::toString(dtype);
      expect_fused_matches_reference(
          name,
          {at::randn({c.batch, c.seq_len, c.heads, c.dim}) * 2.0,
           at::randn({c.batch, c.seq_len, c.heads * c.dim}), at::randn({c.dim}) + 1.0},
          dtype, {false, false, true},
          [&](const std::vector<at::Tensor>& in, bool fused) {
            const at::Tensor gate = strided(in[1]);
            return std::vector<at::Tensor>{
                fused ? fused_or_throw(cuda::gated_rms_norm(in[0], gate, in[2], 1e-6), name)
                      : reference::gated_rms_norm(in[0], gate, in[2], 1e-6)};
          },
          tolerance(dtype));
    }
  }
}

/// A whole mixer on the GPU (fused ops + CUDA delta rule; under bf16 autocast when `bf16`) against
/// its CPU copy (compositions + chunked delta rule, fp32), over two windows so the conv cache and
/// the state carry: outputs, carried memory and every parameter gradient.
template <class Mixer>
void expect_mixer_matches_cpu(Mixer gpu, bool bf16) {
  torch::manual_seed(11);
  const testing::ExactFp32 exact;
  Mixer cpu = std::dynamic_pointer_cast<typename Mixer::Impl>(gpu->clone());
  gpu->to(at::kCUDA);
  const at::Tensor x1 = at::randn({2, 5, 32}), x2 = at::randn({2, 2, 32});
  auto run = [&](Mixer& m, const at::Device& device, bool autocast) {
    m->zero_grad();
    at::Tensor loss;
    nn::MixerOutput second;
    {
      const train::AutocastGuard scope(autocast, device);
      const nn::MixerOutput first = m->forward(x1.to(device), memory::LayerMemory{});
      second = m->forward(x2.to(device), first.written);
      loss = (first.y.to(at::kFloat).pow(2)).sum() +
             (second.y.to(at::kFloat) * second.y.to(at::kFloat).cos()).sum() +
             second.written.state.pow(2).sum();
    }
    loss.backward();
    std::vector<at::Tensor> out = {second.y.cpu().to(at::kFloat), second.written.state.cpu(),
                                   second.written.conv.cpu().to(at::kFloat)};
    for (const auto& p : m->parameters()) out.push_back(p.grad().cpu());
    return out;
  };
  const auto got = run(gpu, at::Device(at::kCUDA), bf16);
  const auto want = run(cpu, at::Device(at::kCPU), false);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    // bf16: wiring or dtype-flow errors give O(1) differences; rounding stays far below.
    EXPECT_LT(relative_error(got[i], want[i]), bf16 ? 1e-1 : 1e-4) << "tensor " << i;
  }
}

TEST(GdnFusedCuda, GatedDeltaNetOnTheGpuMatchesItsCpuCopy) {
  HYPNOS_REQUIRE_CUDA();
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "bf16 autocast" : "fp32");
    torch::manual_seed(12);
    expect_mixer_matches_cpu(nn::GatedDeltaNet(nn::GatedDeltaNetOptions(32, 2, 64, 64)), bf16);
  }
}

TEST(GdnFusedCuda, JetBlockOnTheGpuMatchesItsCpuCopy) {
  HYPNOS_REQUIRE_CUDA();
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "bf16 autocast" : "fp32");
    torch::manual_seed(13);
    expect_mixer_matches_cpu(nn::JetBlock(nn::JetBlockOptions(32, 2, 64, 64)), bf16);
  }
}

#endif  // HYPNOS_WITH_CUDA_KERNELS

}  // namespace
}  // namespace hypnos::ops::fused
