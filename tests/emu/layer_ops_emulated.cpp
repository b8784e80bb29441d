// The fused layer kernels' own source (kernels/gdn_layer_ops.cu, rope.cu, swiglu.cu), rewritten
// for the CPU emulation of tests/emu/cuda_emu.h, against the ATen compositions that define the ops:
// outputs and every gradient, fp32 and bf16, the shapes of the GPU tests (strided inputs, zero
// rows, softplus past its threshold, T = 1, T < W-1, W = 1, 2, 8, D not a multiple of 32). Runs on
// every machine; the GPU tests (tests/ops/gdn_fused_test.cpp and the others) remain the check on
// real hardware.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "gdn_layer_ops.h"  // the rewritten copies in the build tree
#include "hypnos/nn/rope.h"
#include "nn/rope_composition.h"
#include "ops/gdn_fused.h"
#include "rope.h"
#include "swiglu.h"
#include "testing/numeric.h"

namespace hypnos {
namespace {

namespace K = hypnos::kernels_emu;
using testing::relative_error;

void check(const std::string& what, const at::Tensor& got, const at::Tensor& want, double tol) {
  EXPECT_TRUE(got.isfinite().all().item<bool>()) << what;
  EXPECT_LT(relative_error(got, want), tol) << what;
}
K::GdnDtype dt(at::ScalarType s) {
  return s == at::kBFloat16 ? K::GdnDtype::kBFloat16 : K::GdnDtype::kFloat32;
}
K::RowView rv(const at::Tensor& t) {
  return {t.data_ptr(), t.stride(0), t.stride(1)};
}
at::Tensor strided(const at::Tensor& dense) {
  const int64_t B = dense.size(0), T = dense.size(1), C = dense.size(2);
  return at::cat({at::randn({B, T, 3}).to(dense.scalar_type()), dense,
                  at::randn({B, T, 4}).to(dense.scalar_type())},
                 -1)
      .narrow(-1, 3, C);
}
double tol(at::ScalarType s) {
  return s == at::kFloat ? 2e-5 : 2e-2;
}

/// The window fields both convolutions share: [cache; x] in, y and the next cache (when W > 1)
/// out.
void set_window(K::ConvWindowParams& p, const at::Tensor& x, const at::Tensor& cache, int W,
                at::Tensor& y, at::Tensor& next) {
  p.x = rv(x);
  if (cache.defined()) p.cache = rv(cache);
  p.y = y.data_ptr();
  p.next_cache = next.numel() ? next.data_ptr() : nullptr;
  p.batch = x.size(0);
  p.seq_len = x.size(1);
  p.channels = x.size(2);
  p.width = W;
  p.dtype = dt(x.scalar_type());
}

/// ... and their gradients: d y, d next (when W > 1) in; d x, d cache (when there is one), the
/// pre-activation gradient out.
void set_window_grads(K::ConvWindowParams& p, const at::Tensor& gy, const at::Tensor& gn,
                      at::Tensor& gx, at::Tensor& gc, bool with_cache, at::Tensor& pre) {
  p.grad_y = gy.data_ptr();
  p.grad_next_cache = p.width > 1 ? gn.data_ptr() : nullptr;
  p.grad_x = gx.data_ptr();
  p.grad_cache = with_cache && p.width > 1 ? gc.data_ptr() : nullptr;
  p.grad_pre = pre.data_ptr<float>();
}

void conv_case(int64_t B, int64_t T, int64_t C, int W, bool with_cache, at::ScalarType s) {
  torch::manual_seed(T * 31 + C);
  char name[128];
  std::snprintf(name, sizeof name, "conv B%ld T%ld C%ld W%d %s %s", B, T, C, W,
                with_cache ? "cache" : "nocache", s == at::kFloat ? "fp32" : "bf16");
  const at::Tensor x = strided(at::randn({B, T, C}).to(s));
  const at::Tensor w = at::randn({C, 1, W}) * 0.5;
  const at::Tensor cache = with_cache ? strided(at::randn({B, W - 1, C}).to(s)) : at::Tensor();
  const at::Tensor gy = at::randn({B, T, C}), gn = at::randn({B, W - 1, C});
  // kernels
  const at::Tensor w2 = w.reshape({C, W}).contiguous();
  at::Tensor y = at::empty({B, T, C}, x.options()), next = at::empty({B, W - 1, C}, x.options());
  K::ConvSiluParams p;
  set_window(p, x, cache, W, y, next);
  p.weight = w2.data_ptr<float>();
  ASSERT_EQ(K::conv_silu_fwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor gy_s = gy.to(s).contiguous(), gn_s = gn.to(s).contiguous();
  at::Tensor gx = at::empty({B, T, C}, x.options()), gc = at::empty({B, W - 1, C}, x.options());
  at::Tensor pre = at::empty({B, T, C}), partial = at::empty({K::conv_silu_partials(B, T), C, W});
  set_window_grads(p, gy_s, gn_s, gx, gc, with_cache, pre);
  p.grad_weight_partial = partial.data_ptr<float>();
  ASSERT_EQ(K::conv_silu_bwd(p, nullptr), cudaSuccess) << name;
  // reference in fp32 on upcasts
  const at::Tensor xr = x.to(at::kFloat).detach().requires_grad_(true),
                   wr = w.clone().requires_grad_(true);
  const at::Tensor cr =
      with_cache ? cache.to(at::kFloat).detach().requires_grad_(true) : at::Tensor();
  auto [yr, nr] = ops::fused::reference::causal_conv_silu(xr, wr, cr);
  at::Tensor loss = (yr * gy_s.to(at::kFloat)).sum();
  if (W > 1) loss = loss + (nr * gn_s.to(at::kFloat)).sum();
  loss.backward();
  check((std::string(name) + " y"), y, yr, tol(s));
  if (W > 1) check((std::string(name) + " next"), next, nr, tol(s));
  check((std::string(name) + " dx"), gx, xr.grad(), tol(s));
  check((std::string(name) + " dw"), partial.sum(0).view({C, 1, W}), wr.grad(), tol(s));
  if (with_cache && W > 1) check((std::string(name) + " dcache"), gc, cr.grad(), tol(s));
}

void dynamic_conv_case(int64_t B, int64_t T, int64_t C, int W, bool with_cache, at::ScalarType s) {
  torch::manual_seed(T * 17 + C);
  const std::string name = "dynamic conv B" + std::to_string(B) + " T" + std::to_string(T) + " C" +
                           std::to_string(C) + " W" + std::to_string(W) +
                           (with_cache ? " cache " : " ") + (s == at::kFloat ? "fp32" : "bf16");
  const at::Tensor x = strided(at::randn({B, T, C}).to(s));
  const at::Tensor kernel = (at::randn({B, T, C, W}) * 0.5).to(s);
  const at::Tensor cache = with_cache ? strided(at::randn({B, W - 1, C}).to(s)) : at::Tensor();
  at::Tensor y = at::empty({B, T, C}, x.options()), next = at::empty({B, W - 1, C}, x.options());
  K::DynamicConvSiluParams p;
  set_window(p, x, cache, W, y, next);
  p.kernel = kernel.data_ptr();
  ASSERT_EQ(K::dynamic_conv_silu_fwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor gy = at::randn({B, T, C}).to(s).contiguous();
  const at::Tensor gn = at::randn({B, W - 1, C}).to(s).contiguous();
  at::Tensor gx = at::empty({B, T, C}, x.options()), gc = at::empty({B, W - 1, C}, x.options());
  at::Tensor gk = at::empty(kernel.sizes(), kernel.options()), pre = at::empty({B, T, C});
  set_window_grads(p, gy, gn, gx, gc, with_cache, pre);
  p.grad_kernel = gk.data_ptr();
  ASSERT_EQ(K::dynamic_conv_silu_bwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor xr = x.to(at::kFloat).detach().requires_grad_(true);
  const at::Tensor kr = kernel.to(at::kFloat).detach().requires_grad_(true);
  const at::Tensor cr =
      with_cache ? cache.to(at::kFloat).detach().requires_grad_(true) : at::Tensor();
  auto [yr, nr] = ops::fused::reference::dynamic_conv_silu(xr, kr, cr);
  at::Tensor loss = (yr * gy.to(at::kFloat)).sum();
  if (W > 1) loss = loss + (nr * gn.to(at::kFloat)).sum();
  loss.backward();
  check(name + " y", y, yr, tol(s));
  if (W > 1) check(name + " next", next, nr, tol(s));
  check(name + " dx", gx, xr.grad(), tol(s));
  check(name + " dkernel", gk, kr.grad(), tol(s));
  if (with_cache && W > 1) check(name + " dcache", gc, cr.grad(), tol(s));
}

void l2_case(int64_t B, int64_t T, int64_t H, int64_t D, bool silu, at::ScalarType s) {
  torch::manual_seed(D + T);
  char name[128];
  std::snprintf(name, sizeof name, "l2 B%ld T%ld H%ld D%ld %s %s", B, T, H, D, silu ? "silu" : "",
                s == at::kFloat ? "fp32" : "bf16");
  at::Tensor dense = at::randn({B, T, H * D});
  dense.select(1, 0).narrow(-1, 0, D).zero_();
  const at::Tensor x = strided(dense.to(s));
  at::Tensor y = at::empty({B, T, H, D}, x.options());
  K::L2NormParams p;
  p.x = rv(x);
  p.y = y.data_ptr();
  p.batch = B;
  p.seq_len = T;
  p.heads = H;
  p.dim = int(D);
  p.silu = silu;
  p.dtype = dt(s);
  ASSERT_EQ(K::l2norm_fwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor gy = at::randn({B, T, H, D}).to(s).contiguous();
  at::Tensor gx = at::empty({B, T, H * D}, x.options());
  p.grad_y = gy.data_ptr();
  p.grad_x = gx.data_ptr();
  ASSERT_EQ(K::l2norm_bwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor xr = x.to(at::kFloat).detach().requires_grad_(true);
  const at::Tensor yr = ops::fused::reference::l2_normalize_heads(xr, H, silu);
  (yr * gy.to(at::kFloat)).sum().backward();
  at::Tensor weight = at::ones({B, T, H * D});
  weight.select(1, 0).narrow(-1, 0, D).fill_(1e-12);
  check((std::string(name) + " y"), y, yr, tol(s));
  check((std::string(name) + " dx (weighted)"), gx.to(at::kFloat) * weight, xr.grad() * weight,
        tol(s));
}

void gates_case(int64_t T, at::ScalarType s) {
  torch::manual_seed(T);
  const int64_t B = 3, H = 5;
  char name[64];
  std::snprintf(name, sizeof name, "gates T%ld %s", T, s == at::kFloat ? "fp32" : "bf16");
  at::Tensor a0 = at::randn({B, T, H}) * 4.0;
  a0.select(2, 1).fill_(25.0);
  const at::Tensor a = strided(a0.to(s)), b = strided((at::randn({B, T, H}) * 3.0).to(s));
  const at::Tensor A_log = at::rand({H}) * 2.7, dt_bias = at::randn({H});
  at::Tensor g = at::empty({B, T, H}), beta = at::empty({B, T, H});
  K::GatesParams p;
  p.a = rv(a);
  p.b = rv(b);
  p.A_log = A_log.data_ptr<float>();
  p.dt_bias = dt_bias.data_ptr<float>();
  p.g = g.data_ptr<float>();
  p.beta = beta.data_ptr<float>();
  p.batch = B;
  p.seq_len = T;
  p.heads = H;
  p.dtype = dt(s);
  ASSERT_EQ(K::gates_fwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor gg = at::randn({B, T, H}), gb = at::randn({B, T, H});
  at::Tensor ga = at::empty({B, T, H}, a.options()), gbb = at::empty({B, T, H}, b.options()),
             terms = at::empty({2, B * T, H});
  p.grad_g = gg.data_ptr<float>();
  p.grad_beta = gb.data_ptr<float>();
  p.grad_a = ga.data_ptr();
  p.grad_b = gbb.data_ptr();
  p.grad_terms = terms.data_ptr<float>();
  ASSERT_EQ(K::gates_bwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor ar = a.to(at::kFloat).detach().requires_grad_(true),
                   br = b.to(at::kFloat).detach().requires_grad_(true);
  const at::Tensor Ar = A_log.clone().requires_grad_(true),
                   dr = dt_bias.clone().requires_grad_(true);
  auto [gr, betar] = ops::fused::reference::gdn_gates(ar, br, Ar, dr);
  ((gr * gg).sum() + (betar * gb).sum()).backward();
  const at::Tensor sums = terms.sum(1);
  check((std::string(name) + " g"), g, gr, tol(s));
  check((std::string(name) + " beta"), beta, betar, tol(s));
  check((std::string(name) + " da"), ga, ar.grad(), tol(s));
  check((std::string(name) + " db"), gbb, br.grad(), tol(s));
  check((std::string(name) + " dA_log"), sums[0], Ar.grad(), tol(s));
  check((std::string(name) + " ddt_bias"), sums[1], dr.grad(), tol(s));
}

void norm_case(int64_t B, int64_t T, int64_t H, int64_t D, at::ScalarType s) {
  torch::manual_seed(D * 7 + T);
  char name[96];
  std::snprintf(name, sizeof name, "gated norm B%ld T%ld H%ld D%ld %s", B, T, H, D,
                s == at::kFloat ? "fp32" : "bf16");
  const at::Tensor x = (at::randn({B, T, H, D}) * 2.0).to(s).contiguous();
  const at::Tensor gate = strided(at::randn({B, T, H * D}).to(s));
  const at::Tensor w = at::randn({D}) + 1.0;
  at::Tensor y = at::empty({B, T, H * D}, x.options());
  K::GatedNormParams p;
  p.x = x.data_ptr();
  p.gate = rv(gate);
  p.weight = w.data_ptr<float>();
  p.y = y.data_ptr();
  p.batch = B;
  p.seq_len = T;
  p.heads = H;
  p.dim = int(D);
  p.eps = 1e-6f;
  p.dtype = dt(s);
  ASSERT_EQ(K::gated_norm_fwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor gy = at::randn({B, T, H * D}).to(s).contiguous();
  at::Tensor gx = at::empty(x.sizes(), x.options()), gg = at::empty({B, T, H * D}, x.options());
  at::Tensor partial = at::empty({K::gated_norm_partials(B * T * H), D});
  p.grad_y = gy.data_ptr();
  p.grad_x = gx.data_ptr();
  p.grad_gate = gg.data_ptr();
  p.grad_weight_partial = partial.data_ptr<float>();
  ASSERT_EQ(K::gated_norm_bwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor xr = x.to(at::kFloat).detach().requires_grad_(true),
                   gr = gate.to(at::kFloat).detach().requires_grad_(true),
                   wr = w.clone().requires_grad_(true);
  const at::Tensor yr = ops::fused::reference::gated_rms_norm(xr, gr, wr, 1e-6);
  (yr * gy.to(at::kFloat)).sum().backward();
  check((std::string(name) + " y"), y, yr, tol(s));
  check((std::string(name) + " dx"), gx, xr.grad(), tol(s));
  check((std::string(name) + " dgate"), gg, gr.grad(), tol(s));
  check((std::string(name) + " dw"), partial.sum(0), wr.grad(), tol(s));
}

void rope_case(int64_t T, at::ScalarType s) {
  torch::manual_seed(T);
  const int64_t B = 3, H = 5, D = 64, offset = 7;
  char name[64];
  std::snprintf(name, sizeof name, "rope T%ld %s", T, s == at::kFloat ? "fp32" : "bf16");
  const at::Tensor wide = at::randn({B, T, 3 * H * D}).to(s);
  const at::Tensor x = wide.narrow(-1, H * D, H * D).view({B, T, H, D}).transpose(1, 2);
  const nn::RopeTable rows =
      nn::rope_table(0, offset + T, D, 10000.0, at::TensorOptions()).rows(offset, T);
  at::Tensor y = at::empty(x.sizes(), x.options());
  K::RopeParams p;
  p.x = x.data_ptr();
  p.stride_b = x.stride(0);
  p.stride_h = x.stride(1);
  p.stride_t = x.stride(2);
  p.cos = rows.cos.data_ptr<float>();
  p.sin = rows.sin.data_ptr<float>();
  p.table_stride = rows.cos.stride(0);
  p.y = y.data_ptr();
  p.batch = B;
  p.heads = H;
  p.seq_len = T;
  p.dim = int(D);
  p.dtype = dt(s);
  ASSERT_EQ(K::rope_fwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor gy = at::randn(y.sizes()).to(s).contiguous();
  at::Tensor gx = at::empty(gy.sizes(), gy.options());
  p.grad_y = gy.data_ptr();
  p.grad_x = gx.data_ptr();
  ASSERT_EQ(K::rope_bwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor xr = x.to(at::kFloat).detach().requires_grad_(true);
  const at::Tensor yr = nn::detail::apply_rope_composition(xr, rows);
  (yr * gy.to(at::kFloat)).sum().backward();
  check((std::string(name) + " y"), y, yr, tol(s));
  check((std::string(name) + " dx"), gx, xr.grad(), tol(s));
}

void swiglu_case(at::ScalarType s) {
  torch::manual_seed(3);
  const char* name = s == at::kFloat ? "swiglu fp32" : "swiglu bf16";
  const int64_t F = 83;
  const at::Tensor h = (at::randn({5, 9, 2 * F}) * 3.0).to(s);
  at::Tensor y = at::empty({5, 9, F}, h.options());
  K::SiluMulParams p;
  p.h = h.data_ptr();
  p.y = y.data_ptr();
  p.rows = 45;
  p.features = F;
  p.dtype = dt(s);
  ASSERT_EQ(K::silu_mul_fwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor gy = at::randn({5, 9, F}).to(s);
  at::Tensor gh = at::empty(h.sizes(), h.options());
  p.grad_y = gy.data_ptr();
  p.grad_h = gh.data_ptr();
  ASSERT_EQ(K::silu_mul_bwd(p, nullptr), cudaSuccess) << name;
  const at::Tensor hr = h.to(at::kFloat).detach().requires_grad_(true);
  const auto gu = hr.split(F, -1);
  const at::Tensor yr = at::silu(gu[0]) * gu[1];
  (yr * gy.to(at::kFloat)).sum().backward();
  check(std::string(name) + " y", y, yr, tol(s));
  check(std::string(name) + " dh", gh, hr.grad(), tol(s));
}

}  // namespace

TEST(LayerOpsEmulated, CausalConvSiluMatchesComposition) {
  for (auto s : {at::kFloat, at::kBFloat16}) {
    conv_case(3, 37, 80, 4, true, s);
    conv_case(2, 1, 24, 4, true, s);
    conv_case(2, 2, 24, 4, true, s);
    conv_case(2, 2, 24, 4, false, s);
    conv_case(2, 5, 130, 4, false, s);
    conv_case(2, 9, 16, 2, true, s);
    conv_case(2, 6, 16, 1, false, s);
    conv_case(2, 40, 33, 8, true, s);
  }
}

TEST(LayerOpsEmulated, DynamicConvSiluMatchesComposition) {
  for (auto s : {at::kFloat, at::kBFloat16}) {
    dynamic_conv_case(3, 37, 40, 4, true, s);
    dynamic_conv_case(2, 1, 24, 4, true, s);
    dynamic_conv_case(2, 2, 24, 4, false, s);
    dynamic_conv_case(2, 9, 16, 2, true, s);
    dynamic_conv_case(2, 6, 16, 1, false, s);
  }
}

TEST(LayerOpsEmulated, L2NormalizeHeadsMatchesComposition) {
  for (auto s : {at::kFloat, at::kBFloat16}) {
    for (bool silu : {false, true}) {
      l2_case(2, 37, 3, 64, silu, s);
      l2_case(3, 1, 4, 128, silu, s);
      l2_case(2, 5, 2, 40, silu, s);
      l2_case(1, 3, 1, 256, silu, s);
    }
  }
}

TEST(LayerOpsEmulated, GatesMatchComposition) {
  for (auto s : {at::kFloat, at::kBFloat16}) {
    for (int64_t T : {1, 24, 75}) gates_case(T, s);
  }
}

TEST(LayerOpsEmulated, GatedRmsNormMatchesComposition) {
  for (auto s : {at::kFloat, at::kBFloat16}) {
    norm_case(2, 37, 3, 64, s);
    norm_case(3, 1, 4, 128, s);
    norm_case(2, 5, 2, 48, s);
    norm_case(6, 24, 4, 64, s);  // more rows than one block's warps: partial sums over blocks
  }
}

TEST(LayerOpsEmulated, RopeMatchesComposition) {
  for (auto s : {at::kFloat, at::kBFloat16}) {
    for (int64_t T : {1, 24, 37}) rope_case(T, s);
  }
}

TEST(LayerOpsEmulated, SiluMulMatchesComposition) {
  for (auto s : {at::kFloat, at::kBFloat16}) swiglu_case(s);
}

}  // namespace hypnos
