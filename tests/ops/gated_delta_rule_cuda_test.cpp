// The CUDA kernels against the float64 per-step recurrence (GdnBackend::kReference) on upcast
// copies of the same inputs, docs/delta_rule.md section 6 items 3-6. Compiled only with the
// kernels; skips without a GPU, except the host-side layout tests.
#ifdef HYPNOS_WITH_CUDA_KERNELS  // the CUDA op is built only with the kernels (HYPNOS_CUDA)
#include "cuda/gated_delta_rule_cuda.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "../../kernels/gdn_mma.cuh"  // host-side layout functions only: no CUDA needed
#include "hypnos/ops/gated_delta_rule.h"
#include "ops/gated_delta_rule_backends.h"
#include "testing/cuda.h"
#include "testing/errors.h"
#include "testing/numeric.h"

namespace hypnos::ops {
namespace {

using testing::relative_error;

/// How the log decay g is drawn.
enum class Gate { kLogSigmoid, kStrong, kZero };

struct Case {
  int64_t batch = 2, seq_len = 64, heads = 2;
  int dim = 64;   // K
  int dim_v = 0;  // V when it differs from K
  int v_dim() const { return dim_v ? dim_v : dim; }
  at::ScalarType dtype = at::kBFloat16;
  bool with_initial_state = true;
  double gate_div = 1.0;  // g = logsigmoid(randn) / gate_div
  Gate gate = Gate::kLogSigmoid;
  uint64_t seed = 1;
  GdnKernel kernel = GdnKernel::kTensorCore;  // bf16 inputs only: fp32 inputs take the fp32 kernels
  GdnScanSlice slice = GdnScanSlice::kAuto;
};

struct Inputs {
  at::Tensor q, k, v, g, beta, h0, grad_o, grad_final;  // in the case's dtypes, on the GPU
};

Inputs make_inputs(const Case& c) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = c.batch, T = c.seq_len, H = c.heads, K = c.dim, V = c.v_dim();
  auto randn = [&](at::IntArrayRef s) { return at::randn(s, gen, f64); };
  Inputs in;
  const at::Device cuda(at::kCUDA);
  auto dev = [&](const at::Tensor& t, at::ScalarType s) { return t.to(cuda, s).contiguous(); };
  auto unit_rows = [](const at::Tensor& x) { return x / x.norm(2, {-1}, /*keepdim=*/true); };
  in.q = dev(unit_rows(randn({B, T, H, K})), c.dtype);
  in.k = dev(unit_rows(randn({B, T, H, K})), c.dtype);
  in.v = dev(randn({B, T, H, V}), c.dtype);
  at::Tensor g;
  switch (c.gate) {
    case Gate::kLogSigmoid:
      g = at::log_sigmoid(randn({B, T, H})) / c.gate_div;
      break;
    case Gate::kStrong:
      g = -20.0 * at::rand({B, T, H}, gen, f64);
      break;
    case Gate::kZero:
      g = at::zeros({B, T, H}, f64);
      break;
  }
  in.g = dev(g, at::kFloat);
  in.beta = dev(at::sigmoid(randn({B, T, H})), c.dtype);
  if (c.with_initial_state) in.h0 = dev(0.3 * randn({B, H, K, V}), at::kFloat);
  in.grad_o = dev(randn({B, T, H, V}), c.dtype);
  in.grad_final = dev(randn({B, H, K, V}), at::kFloat);
  return in;
}

struct Result {
  at::Tensor o, final_state, dq, dk, dv, dg, dbeta, dh0;
};

/// Forward and backward of one backend (with `ops`' kernel choices) on copies of the inputs cast to
/// `compute` (nullopt: as is).
Result run(const Inputs& in, GdnBackend backend, std::optional<at::ScalarType> compute,
           OpsOptions ops = {}) {
  ops.gdn_backend = backend;
  auto leaf = [&](const at::Tensor& t) {
    at::Tensor x = compute ? t.to(*compute) : t.clone();
    return x.detach().requires_grad_(true);
  };
  const at::Tensor q = leaf(in.q), k = leaf(in.k), v = leaf(in.v), g = leaf(in.g),
                   beta = leaf(in.beta);
  const at::Tensor h0 = in.h0.defined() ? leaf(in.h0) : at::Tensor();
  const GatedDeltaRuleOutput out = gated_delta_rule(
      q, k, v, g, beta, h0.defined() ? std::optional<at::Tensor>(h0) : std::nullopt, -1.0, ops);
  std::vector<at::Tensor> leaves{q, k, v, g, beta};
  if (h0.defined()) leaves.push_back(h0);
  const at::Tensor go = compute ? in.grad_o.to(*compute) : in.grad_o;
  const at::Tensor gf = compute ? in.grad_final.to(*compute) : in.grad_final;
  const auto grads = torch::autograd::grad({out.o, out.final_state}, leaves, {go, gf});
  Result r{out.o.detach(), out.final_state.detach(),
           grads[0],       grads[1],
           grads[2],       grads[3],
           grads[4],       h0.defined() ? grads[5] : at::Tensor()};
  return r;
}

struct Tolerances {
  double o, state, dqkv, dgb;
};

Tolerances tolerances(at::ScalarType dtype) {
  // fla's thresholds for 16-bit inputs; the fp32 path computes in fp32 throughout, so demand more.
  if (dtype == at::kBFloat16) return {5e-3, 5e-3, 8e-3, 2e-2};
  return {1e-3, 1e-3, 1e-3, 2e-3};
}

/// dg of the tensor-core kernels (bf16 workspaces): every token but the last against fla's
/// tolerance; the last token's dg holds gamma_C <S, dS> over the whole K x V state, read from the
/// bf16 copies of S entering the last chunk and dS leaving it (as fla saves them), whose rounding,
/// a sum of K V relative errors of at most u = 2^-9 per copy, has a standard deviation of about
/// sqrt(2 / 3) u ||S * dS|| and at K V = 32,768 with a unit-normal dS can outweigh every other
/// token's dg together (docs/delta_rule.md section 6): that token is held to six of those standard
/// deviations plus the error fla's tolerance allows the whole tensor. S comes from the float64
/// reference over the tokens before the last chunk.
void expect_gate_gradient_within_state_rounding(const Case& c, const Inputs& in,
                                                const at::Tensor& dg, const at::Tensor& dg_ref,
                                                double tol) {
  using at::indexing::Slice;
  const int64_t T = c.seq_len, tail = (T - 1) % kGdnChunk + 1, before = T - tail;
  const double head_error = relative_error(dg.index({Slice(), Slice(0, T - 1)}),
                                           dg_ref.index({Slice(), Slice(0, T - 1)}));
  EXPECT_LT(head_error, tol) << "dg before the last token, relative error " << head_error;
  const auto f64 = [](const at::Tensor& t) { return t.to(at::kDouble); };
  at::Tensor s_last = in.h0.defined() ? f64(in.h0) : at::zeros_like(f64(in.grad_final));
  if (before > 0) {
    auto first = [&](const at::Tensor& t) { return f64(t.index({Slice(), Slice(0, before)})); };
    s_last =
        gated_delta_rule(first(in.q), first(in.k), first(in.v), first(in.g), first(in.beta),
                         in.h0.defined() ? std::optional<at::Tensor>(f64(in.h0)) : std::nullopt,
                         -1.0, {.gdn_backend = GdnBackend::kReference})
            .final_state;
  }
  const at::Tensor bound = 6 * std::sqrt(2.0 / 3.0) * std::ldexp(1.0, -9) *
                           (s_last * f64(in.grad_final)).norm(2, {-2, -1});  // [B, H]
  const at::Tensor last_error =
      (f64(dg.index({Slice(), T - 1})) - dg_ref.index({Slice(), T - 1})).abs();
  const double budget = tol * dg_ref.norm().item<double>();
  EXPECT_TRUE((last_error <= bound + budget).all().item<bool>())
      << "dg at the last token: error " << last_error << " over the state rounding's " << bound
      << " plus " << budget;
}

void expect_close_to_reference(const Case& c) {
  const Inputs in = make_inputs(c);
  OpsOptions kernels;
  kernels.gdn_kernel = c.kernel;
  kernels.gdn_scan_slice = c.slice;
  const Result got = run(in, GdnBackend::kCuda, std::nullopt, kernels);
  const Result ref = run(in, GdnBackend::kReference, at::kDouble);
  const Tolerances tol = tolerances(c.dtype);
  auto check = [&](const char* name, const at::Tensor& x, const at::Tensor& r, double limit) {
    ASSERT_TRUE(x.defined()) << name;
    EXPECT_FALSE(x.isnan().any().item<bool>()) << name << " has NaN";
    const double err = relative_error(x, r);
    EXPECT_LT(err, limit) << name << " relative error " << err;
  };
  check("o", got.o, ref.o, tol.o);
  check("final_state", got.final_state, ref.final_state, tol.state);
  check("dq", got.dq, ref.dq, tol.dqkv);
  check("dk", got.dk, ref.dk, tol.dqkv);
  check("dv", got.dv, ref.dv, tol.dqkv);
  if (c.dtype == at::kBFloat16 && c.kernel == GdnKernel::kTensorCore && c.seq_len > 1) {
    expect_gate_gradient_within_state_rounding(c, in, got.dg, ref.dg, tol.dgb);
  } else {
    check("dg", got.dg, ref.dg, tol.dgb);
  }
  check("dbeta", got.dbeta, ref.dbeta, tol.dgb);
  if (c.with_initial_state) check("dh0", got.dh0, ref.dh0, tol.dqkv);
}

class GatedDeltaRuleCudaSweep : public ::testing::TestWithParam<Case> {};

TEST_P(GatedDeltaRuleCudaSweep, MatchesFloat64Recurrence) {
  HYPNOS_REQUIRE_CUDA();
  expect_close_to_reference(GetParam());
}

std::vector<Case> sweep_cases() {
  std::vector<Case> cases;
  const double divs[] = {1.0, 8.0, 32.0};
  uint64_t seed = 10;
  int d_index = 0;
  for (int64_t T : {1, 24, 37, 63, 64, 65, 130, 1000}) {  // 24: a sleep window; tails 1-40
    for (int dim : {64, 128}) {
      for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
        for (bool h0 : {true, false}) {
          Case c;
          c.seq_len = T;
          c.dim = dim;
          c.dtype = dtype;
          c.with_initial_state = h0;
          c.gate_div = divs[d_index++ % 3];
          c.seed = seed++;
          cases.push_back(c);
          if (dtype != at::kBFloat16) continue;
          // Two chunks of a D = 128 head with the scans' widths forced (model.gdn_scan_slice),
          // short enough for compute-sanitizer (scripts/gpu_check.sh filters on the suffix).
          if (T == 65 && dim == 128) {
            for (GdnScanSlice slice : {GdnScanSlice::k64, GdnScanSlice::k128}) {
              Case sliced = c;
              sliced.slice = slice;
              cases.push_back(sliced);
            }
          }
          // bf16 inputs also on the CUDA-core kernels (model.gdn_kernel: fp32), the fallback.
          c.kernel = GdnKernel::kFp32;
          cases.push_back(c);
        }
      }
    }
  }
  // Every other (K, V) pair the kernels are built for (Jet-Nemotron's JetBlock is 96 x 256): a
  // sleep window, two chunks with a tail (the sanitizer shapes) and three chunks, both dtypes,
  // bf16 also on the CUDA-core kernels.
  for (int dim_k : {64, 96, 128, 256}) {
    for (int dim_v : {64, 128, 256}) {
      if (dim_k == dim_v && dim_k != 256) continue;  // swept above
      for (int64_t T : {24, 65, 130}) {
        for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
          Case c;
          c.seq_len = T;
          c.dim = dim_k;
          c.dim_v = dim_v;
          c.dtype = dtype;
          c.gate_div = divs[d_index++ % 3];
          c.seed = seed++;
          cases.push_back(c);
          if (dtype != at::kBFloat16) continue;
          c.kernel = GdnKernel::kFp32;
          cases.push_back(c);
        }
      }
    }
  }
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  const std::string dims = c.v_dim() == c.dim && c.dim <= 128
                               ? "_D" + std::to_string(c.dim)
                               : "_K" + std::to_string(c.dim) + "_V" + std::to_string(c.v_dim());
  return "T" + std::to_string(c.seq_len) + dims + (c.dtype == at::kBFloat16 ? "_bf16" : "_fp32") +
         (c.with_initial_state ? "_h0" : "_noh0") + "_gdiv" + std::to_string(int(c.gate_div)) +
         (c.kernel == GdnKernel::kFp32 ? "_fp32kernels" : "") +
         (c.slice == GdnScanSlice::k64    ? "_slice64"
          : c.slice == GdnScanSlice::k128 ? "_slice128"
                                          : "");
}

INSTANTIATE_TEST_SUITE_P(Shapes, GatedDeltaRuleCudaSweep, ::testing::ValuesIn(sweep_cases()),
                         case_name);

TEST(GatedDeltaRuleCuda, StrongDecayDownToMinus20StaysFiniteAndAccurate) {
  HYPNOS_REQUIRE_CUDA();
  for (int dim : {64, 128}) {
    Case c;
    c.seq_len = 200;
    c.dim = dim;
    c.gate = Gate::kStrong;
    c.seed = 77 + dim;
    expect_close_to_reference(c);
  }
}

// The scans' three CTA widths (32 and 64 state columns, a whole D = 128 head), whichever the
// automatic choice takes, over several chunks with a tail: each refills its staged tiles while
// the next chunk's copies fly.
TEST(GatedDeltaRuleCuda, EveryScanSliceWidthMatches) {
  HYPNOS_REQUIRE_CUDA();
  for (GdnScanSlice slice : {GdnScanSlice::k32, GdnScanSlice::k64, GdnScanSlice::k128}) {
    for (int dim : {64, 128}) {
      SCOPED_TRACE("slice " + std::to_string(static_cast<int>(slice)) + ", dim " +
                   std::to_string(dim));
      Case c;
      c.seq_len = 200;
      c.dim = dim;
      c.seed = 300 + dim;
      c.slice = slice;
      expect_close_to_reference(c);
    }
  }
}

TEST(GatedDeltaRuleCuda, PureDeltaRuleWithoutGateMatches) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.seq_len = 150;
  c.gate = Gate::kZero;
  c.batch = 3;
  c.heads = 1;
  c.seed = 5;
  expect_close_to_reference(c);
}

TEST(GatedDeltaRuleCuda, ManyHeadsAndBatchesMatch) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.batch = 3;
  c.heads = 16;
  c.seq_len = 300;
  c.dim = 128;
  c.gate_div = 8.0;
  c.seed = 9;
  expect_close_to_reference(c);
}

TEST(GatedDeltaRuleCuda, TwoRunsAreBitwiseIdentical) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.seq_len = 300;
  c.dim = 128;
  c.heads = 4;
  const Inputs in = make_inputs(c);
  const Result a = run(in, GdnBackend::kCuda, std::nullopt);
  const Result b = run(in, GdnBackend::kCuda, std::nullopt);
  EXPECT_TRUE(at::equal(a.o, b.o));
  EXPECT_TRUE(at::equal(a.final_state, b.final_state));
  EXPECT_TRUE(at::equal(a.dq, b.dq));
  EXPECT_TRUE(at::equal(a.dk, b.dk));
  EXPECT_TRUE(at::equal(a.dv, b.dv));
  EXPECT_TRUE(at::equal(a.dg, b.dg));
  EXPECT_TRUE(at::equal(a.dbeta, b.dbeta));
  EXPECT_TRUE(at::equal(a.dh0, b.dh0));
}

// A contiguous view that starts one element into its storage (a slice of a flat buffer can): the
// kernels load rows in 16-byte pieces, so the op copies such inputs, and the results are bitwise
// those of the same values in fresh tensors.
TEST(GatedDeltaRuleCuda, ContiguousViewsOffA16ByteBoundaryMatchFreshTensors) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.seq_len = 37;
  const Inputs in = make_inputs(c);
  const Result want = run(in, GdnBackend::kCuda, std::nullopt);
  auto shifted_leaf = [](const at::Tensor& t) {
    const at::Tensor buf = at::empty({t.numel() + 1}, t.options());
    at::Tensor view = buf.narrow(0, 1, t.numel()).view(t.sizes());
    view.copy_(t);
    EXPECT_NE(reinterpret_cast<uintptr_t>(view.data_ptr()) % 16, 0u);
    return view.detach().requires_grad_(true);
  };
  const at::Tensor q = shifted_leaf(in.q), k = shifted_leaf(in.k), v = shifted_leaf(in.v);
  const at::Tensor g = in.g.clone().requires_grad_(true),
                   beta = in.beta.clone().requires_grad_(true);
  const at::Tensor h0 = in.h0.clone().requires_grad_(true);
  const GatedDeltaRuleOutput out =
      gated_delta_rule(q, k, v, g, beta, h0, -1.0, {.gdn_backend = GdnBackend::kCuda});
  const at::Tensor grad_o = shifted_leaf(in.grad_o).detach();
  const auto grads = torch::autograd::grad({out.o, out.final_state}, {q, k, v, g, beta, h0},
                                           {grad_o, in.grad_final});
  EXPECT_TRUE(at::equal(out.o, want.o));
  EXPECT_TRUE(at::equal(out.final_state, want.final_state));
  EXPECT_TRUE(at::equal(grads[0], want.dq));
  EXPECT_TRUE(at::equal(grads[1], want.dk));
  EXPECT_TRUE(at::equal(grads[2], want.dv));
  EXPECT_TRUE(at::equal(grads[3], want.dg));
  EXPECT_TRUE(at::equal(grads[4], want.dbeta));
  EXPECT_TRUE(at::equal(grads[5], want.dh0));
}

TEST(GatedDeltaRuleCuda, EveryOutputElementIsWrittenOverNaNFilledBuffers) {
  HYPNOS_REQUIRE_CUDA();
  for (int dim : {64, 128}) {
    Case c;
    c.seq_len = 130;
    c.dim = dim;
    const Inputs in = make_inputs(c);
    const double scale = 1.0 / std::sqrt(double(dim));
    const at::Tensor beta32 = in.beta.to(at::kFloat);
    const GdnCudaForward fwd =
        gated_delta_rule_cuda_forward(in.q, in.k, in.v, in.g, beta32, in.h0, scale,
                                      /*save_for_backward=*/true, GdnOutputInit::kNaN);
    EXPECT_FALSE(fwd.o.isnan().any().item<bool>());
    EXPECT_FALSE(fwd.final_state.isnan().any().item<bool>());
    const GdnCudaGrads gr =
        gated_delta_rule_cuda_backward(in.q, in.k, in.v, beta32, /*has_initial_state=*/true, scale,
                                       fwd.saved, in.grad_o, in.grad_final, GdnOutputInit::kNaN);
    for (const at::Tensor* t : {&gr.q, &gr.k, &gr.v, &gr.g, &gr.beta, &gr.initial_state}) {
      EXPECT_FALSE(t->isnan().any().item<bool>());
    }
  }
}

TEST(GatedDeltaRuleCuda, InferencePathEqualsTrainingForward) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.seq_len = 100;
  const Inputs in = make_inputs(c);
  const GatedDeltaRuleOutput plain =
      gated_delta_rule_cuda(in.q, in.k, in.v, in.g, in.beta, in.h0, -1.0);
  const Result trained = run(in, GdnBackend::kCuda, std::nullopt);
  EXPECT_TRUE(at::equal(plain.o, trained.o));
  EXPECT_TRUE(at::equal(plain.final_state, trained.final_state));
}

TEST(GatedDeltaRuleCuda, StateCarriedAcrossTwoCallsEqualsOneCall) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.seq_len = 230;
  c.dtype = at::kFloat;
  const Inputs in = make_inputs(c);
  const GatedDeltaRuleOutput whole =
      gated_delta_rule_cuda(in.q, in.k, in.v, in.g, in.beta, in.h0, -1.0);
  auto part = [&](const at::Tensor& t, int64_t from, int64_t len) {
    return t.narrow(1, from, len);  // strided views: the op copies them
  };
  const GatedDeltaRuleOutput first =
      gated_delta_rule_cuda(part(in.q, 0, 100), part(in.k, 0, 100), part(in.v, 0, 100),
                            part(in.g, 0, 100), part(in.beta, 0, 100), in.h0, -1.0);
  const GatedDeltaRuleOutput second =
      gated_delta_rule_cuda(part(in.q, 100, 130), part(in.k, 100, 130), part(in.v, 100, 130),
                            part(in.g, 100, 130), part(in.beta, 100, 130), first.final_state, -1.0);
  EXPECT_LT(relative_error(at::cat({first.o, second.o}, 1), whole.o), 1e-5);
  EXPECT_LT(relative_error(second.final_state, whole.final_state), 1e-5);
}

TEST(GatedDeltaRuleCuda, DirectionalDerivativesMatchCentralDifferencesInFp32) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.batch = 1;
  c.heads = 1;
  c.seq_len = 70;
  c.dtype = at::kFloat;
  const Inputs in = make_inputs(c);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t{4242});
  std::vector<at::Tensor> x{in.q, in.k, in.v, in.g, in.beta, in.h0};
  auto loss = [&](const std::vector<at::Tensor>& a) {
    const GatedDeltaRuleOutput out =
        gated_delta_rule_cuda(a[0], a[1], a[2], a[3], a[4], a[5], -1.0);
    return (out.o.to(at::kDouble) * in.grad_o.to(at::kDouble)).sum() +
           (out.final_state.to(at::kDouble) * in.grad_final.to(at::kDouble)).sum();
  };
  std::vector<at::Tensor> leaves;
  for (const at::Tensor& t : x) leaves.push_back(t.detach().clone().requires_grad_(true));
  const auto grads = torch::autograd::grad({loss(leaves)}, leaves);
  for (size_t w = 0; w < x.size(); ++w) {
    const at::Tensor d = at::randn(x[w].sizes(), gen, at::kDouble).to(x[w].device(), at::kFloat);
    const double h = 1e-2;
    std::vector<at::Tensor> plus = x, minus = x;
    plus[w] = x[w] + h * d;
    minus[w] = x[w] - h * d;
    at::NoGradGuard no_grad;
    const double numeric = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * h);
    const double analytic = (grads[w].to(at::kDouble) * d.to(at::kDouble)).sum().item<double>();
    EXPECT_NEAR(analytic, numeric, 1e-2 * std::max(1.0, std::abs(numeric))) << "input " << w;
  }
}

TEST(GatedDeltaRuleCuda, TensorCoreScansMatchFp32KernelsAndFloat64Reference) {
  HYPNOS_REQUIRE_CUDA();
  for (int dim : {64, 128}) {
    Case c;
    c.seq_len = 300;
    c.dim = dim;
    c.gate_div = 8.0;  // slow decay: long memory, the state matmuls matter most
    const Inputs in = make_inputs(c);
    const double scale = 1.0 / std::sqrt(double(dim));
    const at::Tensor beta32 = in.beta.to(at::kFloat);
    auto forward = [&](GdnKernel kernel) {
      return gated_delta_rule_cuda_forward(in.q, in.k, in.v, in.g, beta32, in.h0, scale,
                                           /*save_for_backward=*/true, GdnOutputInit::kNaN,
                                           {.gdn_kernel = kernel});
    };
    const GdnCudaForward tc = forward(GdnKernel::kTensorCore);
    const GdnCudaForward fp32 = forward(GdnKernel::kFp32);
    const Result ref = run(in, GdnBackend::kReference, at::kDouble);
    EXPECT_LT(relative_error(tc.o, ref.o), 5e-3) << "dim " << dim;
    EXPECT_LT(relative_error(tc.final_state, ref.final_state), 5e-3) << "dim " << dim;
    // bf16 operands (8-bit mantissa: the state, U, W, P) against fp32 FMAs; Ut, U and the states
    // are also stored in bf16 on the tensor-core path (each rounding alone: about 1.1e-3 relative
    // RMS; the final state measured 2.4-2.5e-3 from the fp32 kernels' on an H100).
    EXPECT_LT(relative_error(tc.o.to(at::kFloat), fp32.o.to(at::kFloat)), 4e-3) << "dim " << dim;
    EXPECT_LT(relative_error(tc.final_state, fp32.final_state), 3.5e-3) << "dim " << dim;
    EXPECT_EQ(tc.saved.u.scalar_type(), at::kBFloat16);
    EXPECT_EQ(fp32.saved.u.scalar_type(), at::kFloat);
    EXPECT_LT(relative_error(tc.saved.u, fp32.saved.u), 4e-3) << "dim " << dim;
    EXPECT_LT(relative_error(tc.saved.chunk_states, fp32.saved.chunk_states), 4e-3)
        << "dim " << dim;
    auto backward = [&](const GdnCudaForward& fwd, GdnKernel kernel) {
      return gated_delta_rule_cuda_backward(in.q, in.k, in.v, beta32, /*has_initial_state=*/true,
                                            scale, fwd.saved, in.grad_o, in.grad_final,
                                            GdnOutputInit::kNaN, {.gdn_kernel = kernel});
    };
    const GdnCudaGrads tc_grads = backward(tc, GdnKernel::kTensorCore);
    const GdnCudaGrads fp32_grads = backward(fp32, GdnKernel::kFp32);
    const std::array<std::pair<const char*, std::array<const at::Tensor*, 3>>, 6> grads{{
        {"dq", {&tc_grads.q, &fp32_grads.q, &ref.dq}},
        {"dk", {&tc_grads.k, &fp32_grads.k, &ref.dk}},
        {"dv", {&tc_grads.v, &fp32_grads.v, &ref.dv}},
        {"dg", {&tc_grads.g, &fp32_grads.g, &ref.dg}},
        {"dbeta", {&tc_grads.beta, &fp32_grads.beta, &ref.dbeta}},
        {"dh0", {&tc_grads.initial_state, &fp32_grads.initial_state, &ref.dh0}},
    }};
    for (const auto& [name, t] : grads) {
      const bool gate = std::string(name) == "dg" || std::string(name) == "dbeta";
      EXPECT_FALSE(t[0]->isnan().any().item<bool>()) << name;
      EXPECT_LT(relative_error(*t[0], *t[2]), gate ? 2e-2 : 8e-3) << name << " dim " << dim;
      EXPECT_LT(relative_error(t[0]->to(at::kFloat), t[1]->to(at::kFloat)), gate ? 1e-2 : 4e-3)
          << name << " dim " << dim;
    }
  }
}

// ---- validation: these run without a GPU --------------------------------------------------------

std::string message_of(const std::function<void()>& f) {
  return testing::error_message<std::invalid_argument>(f);
}

// The op validates once, at its public entry (gated_delta_rule); these go through it.
TEST(GatedDeltaRuleCudaValidation, RejectsUnsupportedHeadDimNamingTheShape) {
  HYPNOS_REQUIRE_CUDA();
  const auto opts = at::TensorOptions().device(at::kCUDA);
  const at::Tensor q = at::zeros({1, 4, 2, 96}, opts), v = at::zeros({1, 4, 2, 96}, opts);
  const at::Tensor gb = at::zeros({1, 4, 2}, opts);
  const std::string msg = message_of([&] {
    gated_delta_rule(q, q, v, gb, gb, std::nullopt, -1.0, {.gdn_backend = GdnBackend::kCuda});
  });
  EXPECT_NE(msg.find("K = 96, V = 96"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not built for"), std::string::npos) << msg;
}

TEST(GatedDeltaRuleCudaValidation, RejectsMismatchedBetaShape) {
  HYPNOS_REQUIRE_CUDA();
  const auto opts = at::TensorOptions().device(at::kCUDA);
  const at::Tensor q = at::zeros({1, 4, 2, 64}, opts);
  const at::Tensor g = at::zeros({1, 4, 2}, opts), beta = at::zeros({1, 5, 2}, opts);
  const std::string msg = message_of([&] {
    gated_delta_rule(q, q, q, g, beta, std::nullopt, -1.0, {.gdn_backend = GdnBackend::kCuda});
  });
  EXPECT_NE(msg.find("beta has shape"), std::string::npos) << msg;
}

// Head dims the kernels are not built for (K = 96, V = 80): auto runs the chunked backend on the
// GPU, equal to the float64 recurrence, with gradients.
TEST(GatedDeltaRuleCuda, AutoRunsUnsupportedHeadDimsOnTheChunkedBackend) {
  HYPNOS_REQUIRE_CUDA();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t{96});
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, T = 70, H = 2, K = 96, V = 80;
  auto unit_rows = [](const at::Tensor& x) { return x / x.norm(2, {-1}, /*keepdim=*/true); };
  const std::vector<at::Tensor> x64{
      unit_rows(at::randn({B, T, H, K}, gen, f64)), unit_rows(at::randn({B, T, H, K}, gen, f64)),
      at::randn({B, T, H, V}, gen, f64), at::log_sigmoid(at::randn({B, T, H}, gen, f64)),
      at::sigmoid(at::randn({B, T, H}, gen, f64))};
  std::vector<at::Tensor> xg;
  for (const at::Tensor& t : x64) xg.push_back(t.to(at::kCUDA, at::kFloat).requires_grad_(true));
  const GatedDeltaRuleOutput got =
      gated_delta_rule(xg[0], xg[1], xg[2], xg[3], xg[4], std::nullopt, -1.0, {});
  const GatedDeltaRuleOutput ref =
      gated_delta_rule(x64[0], x64[1], x64[2], x64[3], x64[4], std::nullopt, -1.0,
                       {.gdn_backend = GdnBackend::kReference});
  EXPECT_TRUE(got.o.is_cuda());
  EXPECT_LT(relative_error(got.o, ref.o), 1e-4);
  EXPECT_LT(relative_error(got.final_state, ref.final_state), 1e-4);
  const at::Tensor dq = torch::autograd::grad({got.o.sum()}, {xg[0]})[0];
  EXPECT_TRUE(dq.isfinite().all().item<bool>());
}

// Jet-Nemotron's JetBlock shape (K = 96, V = 256): auto runs the CUDA kernels where they fit the
// device (an H100 or an A100 takes them; the fallback line names the shared memory otherwise).
TEST(GatedDeltaRuleCuda, AutoRunsTheJetNemotronShapeOnTheKernels) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.seq_len = 130;
  c.dim = 96;
  c.dim_v = 256;
  const Inputs in = make_inputs(c);
  const int64_t cuda_runs = detail::gdn_backend_runs(GdnBackend::kCuda);
  const Result got = run(in, GdnBackend::kAuto, std::nullopt);
  EXPECT_EQ(detail::gdn_backend_runs(GdnBackend::kCuda), cuda_runs + 1);
  const Result ref = run(in, GdnBackend::kReference, at::kDouble);
  const Tolerances tol = tolerances(c.dtype);
  EXPECT_LT(relative_error(got.o, ref.o), tol.o);
  EXPECT_LT(relative_error(got.dk, ref.dk), tol.dqkv);
  EXPECT_LT(relative_error(got.dv, ref.dv), tol.dqkv);
}

// ---- one row of T tokens (packed sequences or one long sequence), grouped value heads

/// {q, k, v, g, beta, initial_state} in float64 on the CPU for one row of T tokens: q, k
/// [1, T, H, K] with unit rows, v [1, T, HV, V], g = logsigmoid(randn) and beta = sigmoid(randn)
/// [1, T, HV], 0.3 randn initial states [N, HV, K, V] (N sequences).
std::vector<at::Tensor> draw_row_inputs(uint64_t seed, int64_t T, int64_t H, int64_t HV, int64_t K,
                                        int64_t V, int64_t N) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  auto unit_rows = [](const at::Tensor& x) { return x / x.norm(2, {-1}, /*keepdim=*/true); };
  return {unit_rows(at::randn({1, T, H, K}, gen, f64)),
          unit_rows(at::randn({1, T, H, K}, gen, f64)),
          at::randn({1, T, HV, V}, gen, f64),
          at::log_sigmoid(at::randn({1, T, HV}, gen, f64)),
          at::sigmoid(at::randn({1, T, HV}, gen, f64)),
          0.3 * at::randn({N, HV, K, V}, gen, f64)};
}

/// x on the GPU as the op's leaves: q, k, v and beta in `dtype`, g and the states in fp32.
std::vector<at::Tensor> cuda_leaves(const std::vector<at::Tensor>& x, at::ScalarType dtype,
                                    bool grad = true) {
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < x.size(); ++i) {
    const at::ScalarType s = i == 3 || i == 5 ? at::kFloat : dtype;
    out.push_back(x[i].to(at::kCUDA, s).contiguous().requires_grad_(grad));
  }
  return out;
}

GatedDeltaRuleOutput run_op(const std::vector<at::Tensor>& x, const OpsOptions& ops,
                            const std::optional<at::Tensor>& cu_seqlens = std::nullopt) {
  return gated_delta_rule(x[0], x[1], x[2], x[3], x[4], x[5], -1.0, ops, cu_seqlens);
}

/// sum(o) + ||final_state||^2: the loss whose gradients the tests compare.
at::Tensor sum_loss(const GatedDeltaRuleOutput& out) {
  return out.o.to(at::kDouble).sum() + out.final_state.to(at::kDouble).pow(2).sum();
}

// Packed sequences (cu_seqlens) on the GPU run the kernels (one launch per pass for all
// sequences): equal to the float64 recurrence with gradients, in fp32 (the CUDA-core kernels) and
// at the Jet-Nemotron head dims in bf16 (the tensor-core ones); offsets may live on either device.
TEST(GatedDeltaRuleCuda, AutoRunsPackedSequencesOnTheKernels) {
  HYPNOS_REQUIRE_CUDA();
  struct Packed {
    int64_t K, V;
    at::ScalarType dtype;
    double tol_out, tol_grad;
  };
  for (const Packed& c :
       {Packed{64, 64, at::kFloat, 1e-4, 1e-3}, Packed{96, 256, at::kBFloat16, 5e-3, 2e-2}}) {
    SCOPED_TRACE(c.dtype == at::kFloat ? "fp32 64 x 64" : "bf16 96 x 256");
    const std::vector<int64_t> cu = {0, 1, 64, 129, 259};  // 1, 63, 65 and 130 tokens
    const int64_t N = 4, T = cu.back(), H = 2;
    const std::vector<at::Tensor> xg =
        cuda_leaves(draw_row_inputs(65, T, H, H, c.K, c.V, N), c.dtype);
    // The reference reads the same rounded values, in float64.
    std::vector<at::Tensor> x64_leaves;
    for (const at::Tensor& t : xg) {
      x64_leaves.push_back(t.detach().to(at::kCPU, at::kDouble).requires_grad_(true));
    }
    const at::Tensor cu_cpu = at::tensor(cu, at::TensorOptions().dtype(at::kLong));
    const GatedDeltaRuleOutput ref =
        run_op(x64_leaves, {.gdn_backend = GdnBackend::kReference}, cu_cpu);
    const int64_t kernel_runs = detail::gdn_backend_runs(GdnBackend::kCuda);
    for (const at::Tensor& offsets : {cu_cpu, cu_cpu.to(at::kCUDA, at::kInt)}) {
      const at::NoGradGuard no_grad;
      const GatedDeltaRuleOutput got = run_op(xg, {}, offsets);
      EXPECT_TRUE(got.o.is_cuda());
      EXPECT_EQ(got.final_state.sizes(), (std::vector<int64_t>{N, H, c.K, c.V}));
      EXPECT_LT(relative_error(got.o, ref.o), c.tol_out);
      EXPECT_LT(relative_error(got.final_state, ref.final_state), c.tol_out);
    }
    EXPECT_EQ(detail::gdn_backend_runs(GdnBackend::kCuda), kernel_runs + 2);
    const GatedDeltaRuleOutput got = run_op(xg, {.gdn_backend = GdnBackend::kCuda}, cu_cpu);
    const auto grads = torch::autograd::grad({sum_loss(got)}, xg);
    const auto grads64 = torch::autograd::grad({sum_loss(ref)}, x64_leaves);
    for (size_t i = 0; i < grads.size(); ++i) {
      EXPECT_LT(relative_error(grads[i], grads64[i]), c.tol_grad) << "gradient " << i;
    }
  }
}

// A packed batch gives each sequence the bits it gets alone (same kernels, same chunks).
TEST(GatedDeltaRuleCuda, PackedSequencesEqualEachSequenceAloneBitForBit) {
  HYPNOS_REQUIRE_CUDA();
  const std::vector<int64_t> cu = {0, 70, 71, 95, 2095};  // 70, 1, 24 and 2,000 tokens
  const int64_t N = 4, T = cu.back(), H = 3, K = 96, V = 256;
  const std::vector<at::Tensor> x =
      cuda_leaves(draw_row_inputs(66, T, H, H, K, V, N), at::kBFloat16);
  const OpsOptions cuda{.gdn_backend = GdnBackend::kCuda};
  const GatedDeltaRuleOutput all = run_op(x, cuda, at::tensor(cu, at::kLong));
  const auto grads = torch::autograd::grad({sum_loss(all)}, x);
  using at::indexing::Slice;
  for (int64_t i = 0; i < N; ++i) {
    SCOPED_TRACE(::testing::Message() << "sequence " << i);
    auto rows = [&](const at::Tensor& t) { return t.index({Slice(), Slice(cu[i], cu[i + 1])}); };
    auto state = [&](const at::Tensor& t) { return t.index({Slice(i, i + 1)}); };
    std::vector<at::Tensor> one;
    for (size_t a = 0; a < 5; ++a)
      one.push_back(rows(x[a]).detach().contiguous().requires_grad_(true));
    one.push_back(state(x[5]).detach().contiguous().requires_grad_(true));
    const GatedDeltaRuleOutput alone = run_op(one, cuda);
    EXPECT_TRUE(at::equal(rows(all.o), alone.o)) << "o";
    EXPECT_TRUE(at::equal(state(all.final_state), alone.final_state)) << "final_state";
    const auto grads_alone = torch::autograd::grad({sum_loss(alone)}, one);
    for (size_t a = 0; a < 5; ++a) {
      EXPECT_TRUE(at::equal(rows(grads[a]), grads_alone[a])) << "gradient " << a;
    }
    EXPECT_TRUE(at::equal(state(grads[5]), grads_alone[5])) << "gradient of the initial state";
  }
}

// Grouped value heads on the kernels (value head h reads q, k head h / G, no repeated copies):
// the same outputs as the kernels on q and k repeated per value head, and the shared heads'
// gradients as the sum over their group, in bf16 (tensor cores) and fp32, packed too.
TEST(GatedDeltaRuleCuda, GroupedValueHeadsEqualRepeatedQkOnTheKernels) {
  HYPNOS_REQUIRE_CUDA();
  const int64_t T = 130, H = 2, G = 4, K = 96, V = 128;
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    for (const bool packed : {false, true}) {
      SCOPED_TRACE(::testing::Message() << c10::toString(dtype) << (packed ? " packed" : ""));
      const int64_t N = packed ? 2 : 1;
      const std::vector<at::Tensor> x =
          cuda_leaves(draw_row_inputs(67, T, H, H * G, K, V, N), dtype);
      std::vector<at::Tensor> repeated_qk = x;
      repeated_qk[0] = x[0].repeat_interleave(G, 2);
      repeated_qk[1] = x[1].repeat_interleave(G, 2);
      const std::optional<at::Tensor> cu =
          packed ? std::optional<at::Tensor>(at::tensor({int64_t{0}, int64_t{37}, T}))
                 : std::nullopt;
      const OpsOptions cuda{.gdn_backend = GdnBackend::kCuda};
      const GatedDeltaRuleOutput grouped = run_op(x, cuda, cu);
      const GatedDeltaRuleOutput repeated = run_op(repeated_qk, cuda, cu);
      EXPECT_TRUE(at::equal(grouped.o, repeated.o));
      EXPECT_TRUE(at::equal(grouped.final_state, repeated.final_state));
      const auto got = torch::autograd::grad({sum_loss(grouped)}, x);
      const auto want = torch::autograd::grad({sum_loss(repeated)}, x);
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].sizes(), x[i].sizes()) << "gradient " << i;
        EXPECT_LT(relative_error(got[i], want[i]), 1e-6) << "gradient " << i;
      }
    }
  }
}

// The separate output kernel (model.gdn_forward_output=separate) gives the fused scan's bits, on
// a long single sequence (its use), the Jet-Nemotron head dims packed, and without gradients.
TEST(GatedDeltaRuleCuda, SeparateOutputKernelGivesTheFusedScansBits) {
  HYPNOS_REQUIRE_CUDA();
  struct Shape {
    int64_t T, H, K, V;
    bool packed, grad;
  };
  for (const Shape& s : {Shape{2048, 4, 128, 128, false, true}, Shape{300, 2, 96, 256, true, true},
                         Shape{700, 2, 64, 64, false, false}}) {
    SCOPED_TRACE(::testing::Message() << "T " << s.T << " K " << s.K << " V " << s.V
                                      << (s.packed ? " packed" : "") << (s.grad ? "" : " no grad"));
    const int64_t N = s.packed ? 2 : 1;
    const std::vector<at::Tensor> x =
        cuda_leaves(draw_row_inputs(68, s.T, s.H, s.H, s.K, s.V, N), at::kBFloat16, s.grad);
    const std::optional<at::Tensor> cu =
        s.packed ? std::optional<at::Tensor>(at::tensor({int64_t{0}, int64_t{129}, s.T}))
                 : std::nullopt;
    auto run = [&](GdnForwardOutput where) {
      return run_op(x, {.gdn_backend = GdnBackend::kCuda, .gdn_forward_output = where}, cu);
    };
    const GatedDeltaRuleOutput separate = run(GdnForwardOutput::kSeparate);
    const GatedDeltaRuleOutput fused = run(GdnForwardOutput::kScan);
    EXPECT_TRUE(at::equal(separate.o, fused.o)) << "o";
    EXPECT_TRUE(at::equal(separate.final_state, fused.final_state)) << "final_state";
    if (!s.grad) continue;
    const auto got = torch::autograd::grad({sum_loss(separate)}, x);
    const auto want = torch::autograd::grad({sum_loss(fused)}, x);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(at::equal(got[i], want[i])) << "gradient " << i;
    }
  }
}

TEST(GatedDeltaRuleCudaValidation, BackwardRejectsWorkspacesSavedForTheOtherKernels) {
  HYPNOS_REQUIRE_CUDA();
  Case c;
  c.seq_len = 70;
  c.dim = 64;
  const Inputs in = make_inputs(c);
  const at::Tensor beta32 = in.beta.to(at::kFloat);
  const GdnCudaForward tc = gated_delta_rule_cuda_forward(
      in.q, in.k, in.v, in.g, beta32, in.h0, 0.125, /*save_for_backward=*/true,
      GdnOutputInit::kUninitialized, {.gdn_kernel = GdnKernel::kTensorCore});
  const std::string msg = message_of([&] {
    gated_delta_rule_cuda_backward(in.q, in.k, in.v, beta32, /*has_initial_state=*/true, 0.125,
                                   tc.saved, in.grad_o, in.grad_final,
                                   GdnOutputInit::kUninitialized, {.gdn_kernel = GdnKernel::kFp32});
  });
  EXPECT_NE(msg.find("gdn_kernel"), std::string::npos) << msg;
}

// ---- host model of the tensor-core fragment layouts and ldmatrix addressing (kernels/gdn_mma.cuh)

using kernels::mma::M16N8K8;

TEST(GdnMmaLayout, Tf32FragmentsMatchThePtxIsaTables) {
  // PTX ISA, mma.m16n8k8 .tf32 (its accumulator layout is the kernels'): lane 5 is groupID 1,
  // threadID_in_group 1; lane 30 is 7, 2.
  const std::array<std::array<int, 2>, 4> a5{{{1, 1}, {9, 1}, {1, 5}, {9, 5}}};
  const std::array<std::array<int, 2>, 4> c30{{{7, 4}, {7, 5}, {15, 4}, {15, 5}}};
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(M16N8K8::a_row(5, r), a5[r][0]) << r;
    EXPECT_EQ(M16N8K8::a_col(5, r), a5[r][1]) << r;
    EXPECT_EQ(M16N8K8::c_row(30, r), c30[r][0]) << r;
    EXPECT_EQ(M16N8K8::c_col(30, r), c30[r][1]) << r;
  }
  EXPECT_EQ(M16N8K8::b_row(30, 0), 2);
  EXPECT_EQ(M16N8K8::b_row(30, 1), 6);
  EXPECT_EQ(M16N8K8::b_col(30, 1), 7);
}

TEST(GdnMmaLayout, EveryTileElementHasExactlyOneOwner) {
  auto count = [](int rows, int cols, int regs, auto row, auto col) {
    std::vector<int> owners(rows * cols, 0);
    for (int lane = 0; lane < 32; ++lane) {
      for (int r = 0; r < regs; ++r) {
        const int i = row(lane, r), j = col(lane, r);
        if (i < 0 || i >= rows || j < 0 || j >= cols) return false;
        ++owners[i * cols + j];
      }
    }
    for (int n : owners) {
      if (n != 1) return false;
    }
    return true;
  };
  EXPECT_TRUE(count(16, 8, 4, M16N8K8::a_row, M16N8K8::a_col));
  EXPECT_TRUE(count(8, 8, 2, M16N8K8::b_row, M16N8K8::b_col));
  EXPECT_TRUE(count(16, 8, 4, M16N8K8::c_row, M16N8K8::c_col));
}

using kernels::mma::LdmatrixX4;
using kernels::mma::M16N8K16;

TEST(GdnMmaLayout, Bf16FragmentsMatchThePtxIsaTables) {
  // PTX ISA, mma.m16n8k16 .bf16: lane 5 is groupID 1, threadID_in_group 1; each register holds two
  // elements, the lower column (A) or row (B) in the low half.
  const std::array<std::array<int, 3>, 4> a5{{{1, 2, 3}, {9, 2, 3}, {1, 10, 11}, {9, 10, 11}}};
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(M16N8K16::a_row(5, r), a5[r][0]) << r;
    EXPECT_EQ(M16N8K16::a_col(5, r, 0), a5[r][1]) << r;
    EXPECT_EQ(M16N8K16::a_col(5, r, 1), a5[r][2]) << r;
  }
  EXPECT_EQ(M16N8K16::b_row(5, 0, 0), 2);
  EXPECT_EQ(M16N8K16::b_row(5, 0, 1), 3);
  EXPECT_EQ(M16N8K16::b_row(5, 1, 0), 10);
  EXPECT_EQ(M16N8K16::b_row(5, 1, 1), 11);
  EXPECT_EQ(M16N8K16::b_col(5, 1), 1);
  std::vector<int> a_owners(16 * 16, 0), b_owners(16 * 8, 0);
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < 2; ++e) {
      for (int r = 0; r < 4; ++r)
        ++a_owners[M16N8K16::a_row(lane, r) * 16 + M16N8K16::a_col(lane, r, e)];
      for (int r = 0; r < 2; ++r)
        ++b_owners[M16N8K16::b_row(lane, r, e) * 8 + M16N8K16::b_col(lane, r)];
    }
  }
  for (int n : a_owners) EXPECT_EQ(n, 1);
  for (int n : b_owners) EXPECT_EQ(n, 1);
}

/// ldmatrix.x4 on the host as the PTX ISA defines it, on a stored tile t (element (r, c) at
/// t[r * ld + c]): lanes 8 m .. 8 m + 7 give the row addresses of block m (here as stored row and
/// column); element e of register m of lane l is block m's (l / 4, 2 (l % 4) + e), or with .trans
/// its (2 (l % 4) + e, l / 4).
int ldmatrix_element(const std::vector<int>& t, int ld,
                     const std::array<std::array<int, 2>, 32>& at, bool trans, int lane, int m,
                     int e) {
  const int row = trans ? 2 * (lane % 4) + e : lane / 4,
            col = trans ? lane / 4 : 2 * (lane % 4) + e;
  const auto& start = at[8 * m + row];
  return t[start[0] * ld + start[1] + col];
}

TEST(GdnMmaLayout, LdmatrixAddressingYieldsTheMmaFragmentsOfEitherOrientation) {
  constexpr int kRows = 48, kCols = 40;  // a tile larger than the fragments, corners off zero
  std::vector<int> t(kRows * kCols);
  for (int i = 0; i < kRows * kCols; ++i) t[i] = i;
  auto stored = [&](bool transposed, int i, int k) {  // logical (i, k) of the operand
    return transposed ? t[k * kCols + i] : t[i * kCols + k];
  };
  for (const bool transposed : {false, true}) {
    const int r0 = 16, k0 = 8;  // A rows [16, 32), k [8, 24); B k [8, 24), n [16, 32)
    std::array<std::array<int, 2>, 32> at{};
    // A fragment: stored corner (r0, k0), or (k0, r0) transposed.
    for (int lane = 0; lane < 32; ++lane) {
      at[lane] = {(transposed ? k0 : r0) + LdmatrixX4::a_row(lane, transposed),
                  (transposed ? r0 : k0) + LdmatrixX4::a_col(lane, transposed)};
    }
    for (int lane = 0; lane < 32; ++lane) {
      for (int r = 0; r < 4; ++r) {
        for (int e = 0; e < 2; ++e) {
          EXPECT_EQ(
              ldmatrix_element(t, kCols, at, transposed, lane, r, e),
              stored(transposed, r0 + M16N8K16::a_row(lane, r), k0 + M16N8K16::a_col(lane, r, e)))
              << "A transposed " << transposed << " lane " << lane << " reg " << r;
        }
      }
    }
    // B fragments of n-tiles n0 and n0 + 8: logical (k, n) stored at (n, k) when transposed (plain
    // ldmatrix), at (k, n) otherwise (.trans).
    const int n0 = 16;
    for (int lane = 0; lane < 32; ++lane) {
      at[lane] = {(transposed ? n0 : k0) + LdmatrixX4::b_row(lane, transposed),
                  (transposed ? k0 : n0) + LdmatrixX4::b_col(lane, transposed)};
    }
    auto b_stored = [&](int k, int n) { return transposed ? t[n * kCols + k] : t[k * kCols + n]; };
    for (int lane = 0; lane < 32; ++lane) {
      for (int r = 0; r < 4; ++r) {  // b0, b1 of n-tile n0, then of n0 + 8
        for (int e = 0; e < 2; ++e) {
          EXPECT_EQ(ldmatrix_element(t, kCols, at, !transposed, lane, r, e),
                    b_stored(k0 + M16N8K16::b_row(lane, r % 2, e),
                             n0 + 8 * (r / 2) + M16N8K16::b_col(lane, r % 2)))
              << "B transposed " << transposed << " lane " << lane << " reg " << r;
        }
      }
    }
  }
}

template <int M, int N>
void expect_block_tiling_partitions_the_tile() {
  using Tiling = kernels::mma::BlockTiling<M, N, 256>;
  std::vector<int> owners(M * N, 0), slots(M * Tiling::kWarpsN, 0);
  for (int warp = 0; warp < 8; ++warp) {
    for (int lane = 0; lane < 32; ++lane) {
      for (int r = 0; r < Tiling::kRegs; ++r) {
        const int i = Tiling::row(warp, lane, r), j = Tiling::col(warp, lane, r);
        ASSERT_TRUE(i >= 0 && i < M && j >= 0 && j < N) << "warp " << warp << " lane " << lane;
        ++owners[i * N + j];
      }
      // The row sum's writers: lane % 4 == 0 of each warp, rows of registers 0 and 2.
      if (lane % 4 == 0) {
        for (int r : {0, 2}) ++slots[Tiling::scratch_slot(Tiling::row(warp, lane, r), warp)];
      }
    }
  }
  for (int n : owners) ASSERT_EQ(n, 1);
  for (int n : slots) ASSERT_EQ(n, 1);  // each (row, warp column) slot written exactly once
}

TEST(GdnMmaLayout, ChunkKernelBlockTilingGivesEveryElementAndRowSumSlotOneOwner) {
  expect_block_tiling_partitions_the_tile<64, 64>();   // C x C, and C x D at D = 64
  expect_block_tiling_partitions_the_tile<64, 128>();  // C x D at D = 128
  // The row-sum scratch (C * D / 32 floats) must hold M * kWarpsN slots.
  static_assert(64 * kernels::mma::BlockTiling<64, 64, 256>::kWarpsN <= 64 * (64 / 32));
  static_assert(64 * kernels::mma::BlockTiling<64, 128, 256>::kWarpsN <= 64 * (128 / 32));
}

}  // namespace
}  // namespace hypnos::ops
#endif  // HYPNOS_WITH_CUDA_KERNELS
