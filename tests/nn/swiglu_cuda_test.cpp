// SwiGLU's fused gate on the GPU: the MLP against its CPU copy (fp32, outputs and weight
// gradients), and the kernel in bf16 against the fp32 composition. Skip without a GPU.
#ifdef HYPNOS_WITH_CUDA_KERNELS  // the fused kernels are built only with HYPNOS_CUDA
#include "cuda/swiglu_cuda.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "hypnos/nn/mlp.h"
#include "testing/cuda.h"
#include "testing/numeric.h"

namespace hypnos::nn {
namespace {

using testing::relative_error;

TEST(SwiGluCuda, MlpOnTheGpuMatchesItsCpuCopy) {
  HYPNOS_REQUIRE_CUDA();
  torch::manual_seed(2);
  const testing::ExactFp32 exact;
  SwiGluMlp gpu(MlpOptions(40).ratio(4));
  SwiGluMlp cpu = std::dynamic_pointer_cast<SwiGluMlpImpl>(gpu->clone());
  gpu->to(at::kCUDA);
  const at::Tensor x = at::randn({3, 7, 40});
  auto run = [&](SwiGluMlp& m, const at::Device& device) {
    m->zero_grad();
    const at::Tensor y = m->forward(x.to(device));
    (y * y.cos()).sum().backward();
    std::vector<at::Tensor> out = {y.cpu()};
    for (const auto& p : m->parameters()) out.push_back(p.grad().cpu());
    return out;
  };
  const auto got = run(gpu, at::Device(at::kCUDA));
  const auto want = run(cpu, at::Device(at::kCPU));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LT(relative_error(got[i], want[i]), 1e-4) << "tensor " << i;
  }
}

TEST(SwiGluCuda, Bf16KernelMatchesTheFp32Composition) {
  HYPNOS_REQUIRE_CUDA();
  torch::manual_seed(3);
  const int64_t F = 683;  // not a multiple of anything
  const at::Tensor h32 = (at::randn({5, 9, 2 * F}) * 3.0).to(at::kCUDA);
  const at::Tensor h = h32.to(at::kBFloat16).requires_grad_(true);
  const at::Tensor ref_in = h.detach().to(at::kFloat).requires_grad_(true);
  const auto got = detail::silu_mul_cuda(h);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->scalar_type(), at::kBFloat16);
  const at::Tensor want = at::silu(ref_in.narrow(-1, 0, F)) * ref_in.narrow(-1, F, F);
  EXPECT_LT(relative_error(*got, want), 1e-2);
  const at::Tensor grad = at::randn(want.sizes(), want.options());
  got->backward(grad.to(at::kBFloat16));
  want.backward(grad);
  EXPECT_LT(relative_error(h.grad(), ref_in.grad()), 1e-2);
}

}  // namespace
}  // namespace hypnos::nn
#endif  // HYPNOS_WITH_CUDA_KERNELS
