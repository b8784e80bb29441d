// RoPE's fused CUDA kernel against the composition on the CPU (same values, fp32 and bf16, the
// transposed head view of a wider projection as input, a table narrowed to an offset), and an
// attention layer with retained keys on the GPU against its CPU copy. Skip without a GPU.
#ifdef HYPNOS_WITH_CUDA_KERNELS  // the fused kernels are built only with HYPNOS_CUDA
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "cuda/rope_cuda.h"
#include "hypnos/nn/attention.h"
#include "hypnos/nn/rope.h"
#include "testing/cuda.h"
#include "testing/numeric.h"

namespace hypnos::nn {
namespace {

using testing::relative_error;

TEST(RopeCuda, FusedKernelMatchesTheComposition) {
  HYPNOS_REQUIRE_CUDA();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t T : {1, 24, 37}) {
      torch::manual_seed(T);
      const int64_t B = 3, H = 5, D = 64, offset = 7;
      // [B, T, 3 * H * D] -> the middle third as [B, H, T, D]: strided like attention's k.
      const at::Tensor wide = at::randn({B, T, 3 * H * D}).to(dtype);
      const RopeTable whole = rope_table(0, offset + T, D, 10000.0, at::TensorOptions());
      const RopeTable rows = whole.rows(offset, T);
      auto run = [&](const at::Device& device) {
        const at::Tensor w = wide.to(device).detach().requires_grad_(true);
        const at::Tensor x = w.narrow(-1, H * D, H * D).view({B, T, H, D}).transpose(1, 2);
        const RopeTable table{rows.cos.to(device), rows.sin.to(device)};
        // On the GPU the kernel itself (a refusal would fall back to the composition silently).
        const auto fused = device.is_cuda() ? detail::apply_rope_cuda(x, table) : std::nullopt;
        EXPECT_EQ(fused.has_value(), device.is_cuda());
        const at::Tensor y = fused ? *fused : apply_rope(x, table);
        const at::Tensor grad_y = at::arange(y.numel(), y.options().dtype(at::kFloat))
                                      .view(y.sizes())
                                      .cos()
                                      .to(y.scalar_type());
        y.backward(grad_y);
        return std::pair{y.cpu().to(at::kFloat), w.grad().cpu().to(at::kFloat)};
      };
      const auto [y_gpu, g_gpu] = run(at::Device(at::kCUDA));
      const auto [y_cpu, g_cpu] = run(at::Device(at::kCPU));
      const double tol = dtype == at::kFloat ? 1e-6 : 1e-2;
      EXPECT_LT(relative_error(y_gpu, y_cpu), tol) << c10::toString(dtype) << " T " << T;
      EXPECT_LT(relative_error(g_gpu, g_cpu), tol) << c10::toString(dtype) << " T " << T;
    }
  }
}

TEST(RopeCuda, AttentionWithRetainedKeysMatchesItsCpuCopy) {
  HYPNOS_REQUIRE_CUDA();
  torch::manual_seed(3);
  const testing::ExactFp32 exact;
  Attention gpu(AttentionOptions(32, 4));
  Attention cpu = std::dynamic_pointer_cast<AttentionImpl>(gpu->clone());
  gpu->to(at::kCUDA);
  const at::Tensor x1 = at::randn({2, 6, 32}), x2 = at::randn({2, 5, 32});
  auto run = [&](Attention& m, const at::Device& device) {
    m->zero_grad();
    const MixerOutput first = m->forward(x1.to(device), memory::LayerMemory{}, 0);
    const MixerOutput second = m->forward(x2.to(device), first.written, /*span=*/8);
    ((first.y * first.y).sum() + (second.y * second.y.sin()).sum()).backward();
    std::vector<at::Tensor> out = {second.y.cpu()};
    for (const auto& p : m->parameters()) out.push_back(p.grad().cpu());
    return out;
  };
  const auto got = run(gpu, at::Device(at::kCUDA));
  const auto want = run(cpu, at::Device(at::kCPU));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LT(relative_error(got[i], want[i]), 1e-4) << "tensor " << i;
  }
}

}  // namespace
}  // namespace hypnos::nn
#endif  // HYPNOS_WITH_CUDA_KERNELS
