// The gated delta rule's CPU backends: the chunked form equals the per-step definition (forward and
// every gradient), both agree with finite differences, and the entry point validates its arguments.
#include "hypnos/ops/gated_delta_rule.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <tuple>

#include "ops/gated_delta_rule_backends.h"
#include "testing/errors.h"
#include "testing/numeric.h"

namespace hypnos::ops {
namespace {

using hypnos::testing::gradient_check_errors;
using hypnos::testing::relative_error;

// {q, k, v, g, beta, initial_state}; initial_state may be undefined.
using Inputs = std::vector<at::Tensor>;
constexpr const char* kNames[] = {"q", "k", "v", "g", "beta", "initial_state"};

struct Shape {
  int64_t B, T, H, K, V;
};

// fla's test distribution: unit-norm q and k, g = logsigmoid(randn) / gate_div, beta in (0, 1).
Inputs make_inputs(Shape s, uint64_t seed, at::ScalarType dtype = at::kDouble,
                   double gate_div = 4.0, bool with_state = true) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  auto unit = [](const at::Tensor& x) { return x / x.norm(2, -1, /*keepdim=*/true); };
  at::Tensor q = unit(at::randn({s.B, s.T, s.H, s.K}, gen, opt));
  at::Tensor k = unit(at::randn({s.B, s.T, s.H, s.K}, gen, opt));
  at::Tensor v = at::randn({s.B, s.T, s.H, s.V}, gen, opt);
  at::Tensor g = at::log_sigmoid(at::randn({s.B, s.T, s.H}, gen, opt)) / gate_div;
  at::Tensor beta = at::rand({s.B, s.T, s.H}, gen, opt);
  at::Tensor h0 = with_state ? 0.3 * at::randn({s.B, s.H, s.K, s.V}, gen, opt) : at::Tensor();
  Inputs in = {q, k, v, g, beta, h0};
  for (at::Tensor& x : in) {
    if (x.defined()) x = x.to(dtype);
  }
  return in;
}

using Op = std::function<GatedDeltaRuleOutput(const Inputs&)>;

Op reference_op(double scale) {
  return [scale](const Inputs& x) {
    return detail::gated_delta_rule_reference(x[0], x[1], x[2], x[3], x[4], x[5], scale);
  };
}
Op chunked_op(double scale, int64_t chunk) {
  return [scale, chunk](const Inputs& x) {
    return detail::gated_delta_rule_chunked(x[0], x[1], x[2], x[3], x[4], x[5], scale, chunk);
  };
}

// The scalar loss <o, d_o> + <S_T, d_state>, whose gradient is every input's gradient for those
// output cotangents.
at::Tensor loss(const GatedDeltaRuleOutput& out, const at::Tensor& d_o, const at::Tensor& d_state) {
  return (out.o * d_o).sum() + (out.final_state * d_state).sum();
}

// {o, final_state, then the gradient of every defined input}.
std::vector<at::Tensor> outputs_and_grads(const Op& op, const Inputs& in, const at::Tensor& d_o,
                                          const at::Tensor& d_state) {
  Inputs leaves;
  std::vector<at::Tensor> wrt;
  for (const at::Tensor& x : in) {
    leaves.push_back(x.defined() ? x.detach().clone().requires_grad_(true) : x);
    if (x.defined()) wrt.push_back(leaves.back());
  }
  const GatedDeltaRuleOutput out = op(leaves);
  std::vector<at::Tensor> result = {out.o.detach(), out.final_state.detach()};
  for (const at::Tensor& grad : torch::autograd::grad({loss(out, d_o, d_state)}, wrt)) {
    result.push_back(grad);
  }
  return result;
}

std::pair<at::Tensor, at::Tensor> cotangents(Shape s, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  return {at::randn({s.B, s.T, s.H, s.V}, gen, opt), at::randn({s.B, s.H, s.K, s.V}, gen, opt)};
}

const char* result_name(size_t i) {
  static const char* names[] = {"o",  "final_state", "dq",    "dk",
                                "dv", "dg",          "dbeta", "dinitial_state"};
  return names[i];
}

// ---- chunked == reference in double -------------------------------------------------------------

class GatedDeltaRuleChunkedVsReference
    : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool>> {};

TEST_P(GatedDeltaRuleChunkedVsReference, ForwardAndAllGradientsAgreeTo1e10) {
  const auto [T, chunk, with_state] = GetParam();
  const Shape s{2, T, 3, 8, 6};
  const double scale = 1.0 / std::sqrt(8.0);
  const Inputs in = make_inputs(s, /*seed=*/100 + T, at::kDouble, /*gate_div=*/1.0, with_state);
  const auto [d_o, d_state] = cotangents(s, 200 + T);
  const auto ref = outputs_and_grads(reference_op(scale), in, d_o, d_state);
  const auto got = outputs_and_grads(chunked_op(scale, chunk), in, d_o, d_state);
  ASSERT_EQ(ref.size(), got.size());
  ASSERT_EQ(got.size(), with_state ? 8u : 7u);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(got[i].sizes(), ref[i].sizes()) << result_name(i);
    EXPECT_LT(relative_error(got[i], ref[i]), 1e-10) << result_name(i);
  }
}

INSTANTIATE_TEST_SUITE_P(AwkwardLengths, GatedDeltaRuleChunkedVsReference,
                         ::testing::Combine(::testing::Values(1, 7, 63, 64, 65, 130),
                                            ::testing::Values(16, 64), ::testing::Bool()));

// ---- both backends against central finite differences ------------------------------------------

// Each input's gradient of <o, d_o> + <S_T, d_state> against central differences.
void expect_gradients_match_finite_differences(const Op& op, Shape s, uint64_t seed,
                                               int64_t max_coords) {
  const Inputs in = make_inputs(s, seed);
  const auto cot = cotangents(s, seed + 1);
  const at::Tensor &d_o = cot.first, &d_state = cot.second;
  const auto f = [&](const std::vector<at::Tensor>& x) { return loss(op(x), d_o, d_state); };
  const std::vector<double> errors = gradient_check_errors(f, in, /*h=*/1e-6, max_coords);
  for (size_t i = 0; i < errors.size(); ++i) {
    EXPECT_LT(errors[i], 1e-7) << "d" << kNames[i] << " at T = " << s.T;
  }
}

class GatedDeltaRuleFiniteDifferences : public ::testing::TestWithParam<int64_t> {};

TEST_P(GatedDeltaRuleFiniteDifferences, ChunkedGradientsMatchCentralDifferences) {
  const Shape s{1, GetParam(), 2, 4, 3};
  expect_gradients_match_finite_differences(chunked_op(0.5, /*chunk=*/16), s, GetParam(),
                                            /*max_coords=*/0);
}

TEST_P(GatedDeltaRuleFiniteDifferences, ChunkedGradientsMatchCentralDifferencesAtChunk64) {
  const Shape s{1, GetParam(), 1, 4, 3};
  expect_gradients_match_finite_differences(chunked_op(0.5, /*chunk=*/64), s, GetParam(),
                                            /*max_coords=*/64);
}

TEST_P(GatedDeltaRuleFiniteDifferences, ReferenceGradientsMatchCentralDifferences) {
  const Shape s{1, GetParam(), 2, 4, 3};
  // The reference costs T small ops per evaluation: sample coordinates at long T.
  expect_gradients_match_finite_differences(reference_op(0.5), s, GetParam(),
                                            /*max_coords=*/GetParam() > 8 ? 48 : 0);
}

INSTANTIATE_TEST_SUITE_P(Lengths, GatedDeltaRuleFiniteDifferences, ::testing::Values(1, 7, 65));

// ---- semantics through the entry point ----------------------------------------------------------

TEST(GatedDeltaRule, StateCarriedAcrossTwoCallsEqualsOneCall) {
  const Shape s{2, 90, 2, 8, 5};
  const Inputs in = make_inputs(s, 7);
  for (GdnBackend backend : {GdnBackend::kReference, GdnBackend::kChunked}) {
    const auto whole =
        gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0, {.gdn_backend = backend});
    const int64_t cut = 37;  // not a chunk boundary
    auto part = [&](int64_t start, int64_t len, const at::Tensor& state) {
      return gated_delta_rule(in[0].narrow(1, start, len), in[1].narrow(1, start, len),
                              in[2].narrow(1, start, len), in[3].narrow(1, start, len),
                              in[4].narrow(1, start, len), state, -1.0, {.gdn_backend = backend});
    };
    const auto first = part(0, cut, in[5]);
    const auto second = part(cut, s.T - cut, first.final_state);
    EXPECT_LT(relative_error(at::cat({first.o, second.o}, 1), whole.o), 1e-12)
        << gdn_backend_name(backend);
    EXPECT_LT(relative_error(second.final_state, whole.final_state), 1e-12)
        << gdn_backend_name(backend);
  }
}

TEST(GatedDeltaRule, StronglyDecayingGatesStayFiniteAndExact) {
  // g = -20 wipes the state at every step; within a 64-chunk the cumulative decay reaches -1280,
  // where exp(-G) alone would overflow.
  const Shape s{1, 130, 2, 8, 4};
  Inputs in = make_inputs(s, 11);
  in[3] = at::full_like(in[3], -20.0);
  in[3].narrow(1, 0, 10).fill_(0.0);  // a stretch of no decay next to it
  const auto [d_o, d_state] = cotangents(s, 12);
  const auto ref = outputs_and_grads(reference_op(0.35), in, d_o, d_state);
  const auto got = outputs_and_grads(chunked_op(0.35, kGdnChunk), in, d_o, d_state);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(got[i].isfinite().all().item<bool>()) << result_name(i);
    EXPECT_LT(relative_error(got[i], ref[i]), 1e-10) << result_name(i);
  }
  // The same in fp32 through the entry point, where exp underflows already at -88.
  Inputs in32;
  for (const at::Tensor& x : in) in32.push_back(x.to(at::kFloat));
  const auto entry = [](const Inputs& x) {
    return gated_delta_rule(x[0], x[1], x[2], x[3], x[4], x[5], 0.35,
                            {.gdn_backend = GdnBackend::kChunked});
  };
  const auto got32 = outputs_and_grads(entry, in32, d_o.to(at::kFloat), d_state.to(at::kFloat));
  for (size_t i = 0; i < got32.size(); ++i) {
    EXPECT_TRUE(got32[i].isfinite().all().item<bool>()) << result_name(i);
    EXPECT_LT(relative_error(got32[i], ref[i]), 1e-4) << result_name(i);
  }
}

TEST(GatedDeltaRule, Float32ChunkedMatchesDoubleReference) {
  const Shape s{2, 130, 2, 32, 32};
  const Inputs in = make_inputs(s, 21);
  const Inputs in32 = make_inputs(s, 21, at::kFloat);
  const auto [d_o, d_state] = cotangents(s, 22);
  const auto entry = [](GdnBackend backend) {
    return [backend](const Inputs& x) {
      return gated_delta_rule(x[0], x[1], x[2], x[3], x[4], x[5], -1.0, {.gdn_backend = backend});
    };
  };
  const auto ref = outputs_and_grads(entry(GdnBackend::kReference), in, d_o, d_state);
  const auto got = outputs_and_grads(entry(GdnBackend::kChunked), in32, d_o.to(at::kFloat),
                                     d_state.to(at::kFloat));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].scalar_type(), at::kFloat) << result_name(i);
    EXPECT_LT(relative_error(got[i], ref[i]), 1e-4) << result_name(i);
  }
}

class GatedDeltaRuleSixteenBit : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(GatedDeltaRuleSixteenBit, InputsComputeInFloatAndReturnVDtype) {
  const at::ScalarType dtype = GetParam();
  const Shape s{1, 70, 2, 16, 8};
  const Inputs ref_in = make_inputs(s, 31);
  Inputs in = ref_in;
  for (size_t i = 0; i < 5; ++i) in[i] = in[i].to(dtype).requires_grad_(true);
  for (GdnBackend backend : {GdnBackend::kAuto, GdnBackend::kReference, GdnBackend::kChunked}) {
    const auto out =
        gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0, {.gdn_backend = backend});
    EXPECT_EQ(out.o.scalar_type(), dtype);
    EXPECT_EQ(out.final_state.scalar_type(), at::kFloat);
    // Against the double result on the same 16-bit-rounded values: only the rounding of o remains.
    Inputs rounded = ref_in;
    for (size_t i = 0; i < 5; ++i) rounded[i] = in[i].detach().to(at::kDouble);
    const auto exact = gated_delta_rule(rounded[0], rounded[1], rounded[2], rounded[3], rounded[4],
                                        rounded[5], -1.0, {.gdn_backend = GdnBackend::kReference});
    EXPECT_LT(relative_error(out.o, exact.o), 1e-2) << gdn_backend_name(backend);
    EXPECT_LT(relative_error(out.final_state, exact.final_state), 1e-5)
        << gdn_backend_name(backend);
    const auto grads =
        torch::autograd::grad({out.o.to(at::kFloat).sum()}, {in[0], in[1], in[2], in[3], in[4]});
    for (size_t i = 0; i < grads.size(); ++i) {
      EXPECT_EQ(grads[i].scalar_type(), dtype) << kNames[i];
      EXPECT_TRUE(grads[i].to(at::kFloat).isfinite().all().item<bool>()) << kNames[i];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GatedDeltaRuleSixteenBit,
                         ::testing::Values(at::kBFloat16, at::kHalf));

TEST(GatedDeltaRule, AutoOnCpuIsTheChunkedBackend) {
  const Inputs in = make_inputs({2, 70, 2, 8, 4}, 41);
  const auto a = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0,
                                  {.gdn_backend = GdnBackend::kAuto});
  const auto c = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0,
                                  {.gdn_backend = GdnBackend::kChunked});
  EXPECT_TRUE(at::equal(a.o, c.o));
  EXPECT_TRUE(at::equal(a.final_state, c.final_state));
}

TEST(GatedDeltaRule, NonPositiveScaleMeansInverseSqrtK) {
  const Inputs in = make_inputs({1, 9, 2, 16, 4}, 43);
  const auto d = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5]);
  const auto e = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], 0.25);
  EXPECT_LT(relative_error(d.o, e.o), 1e-15);
  const auto f = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], 0.5);
  EXPECT_GT(relative_error(f.o, e.o), 1e-3);
}

TEST(GatedDeltaRule, AbsentInitialStateMeansZeros) {
  const Inputs in = make_inputs({1, 20, 2, 8, 4}, 47, at::kDouble, 4.0, /*with_state=*/false);
  for (GdnBackend backend : {GdnBackend::kReference, GdnBackend::kChunked}) {
    const auto none = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], std::nullopt, -1.0,
                                       {.gdn_backend = backend});
    const auto zeros =
        gated_delta_rule(in[0], in[1], in[2], in[3], in[4], at::zeros({1, 2, 8, 4}, at::kDouble),
                         -1.0, {.gdn_backend = backend});
    EXPECT_TRUE(at::equal(none.o, zeros.o)) << gdn_backend_name(backend);
    EXPECT_TRUE(at::equal(none.final_state, zeros.final_state)) << gdn_backend_name(backend);
  }
}

TEST(GatedDeltaRule, GradientOfFinalStateAloneFlowsThroughChunked) {
  // o unused: its gradient arrives undefined and must count as zero.
  const Shape s{1, 40, 2, 4, 3};
  const Inputs in = make_inputs(s, 53);
  const auto [d_o, d_state] = cotangents(s, 54);
  const auto zero_o = at::zeros_like(d_o);
  const auto ref = outputs_and_grads(reference_op(0.5), in, zero_o, d_state);
  Inputs leaves;
  for (const at::Tensor& x : in) leaves.push_back(x.detach().clone().requires_grad_(true));
  const auto out = chunked_op(0.5, 16)(leaves);
  const auto grads = torch::autograd::grad({(out.final_state * d_state).sum()}, leaves);
  for (size_t i = 0; i < grads.size(); ++i) {
    EXPECT_LT(relative_error(grads[i], ref[i + 2]), 1e-10) << kNames[i];
  }
}

// ---- validation ------------------------------------------------------------------------------

// The op's validation error ("" when nothing was thrown).
std::string error_of(const std::function<void()>& call) {
  return testing::error_message<std::invalid_argument>(call);
}

TEST(GatedDeltaRule, ValidationErrorsNameTheArgumentAndShapes) {
  const Inputs in = make_inputs({2, 5, 3, 4, 6}, 61);
  const at::Tensor &q = in[0], &k = in[1], &v = in[2], &g = in[3], &beta = in[4], &h0 = in[5];
  std::string m = error_of([&] { gated_delta_rule(q, k.narrow(3, 0, 3), v, g, beta, h0); });
  EXPECT_NE(m.find("k has shape [2, 5, 3, 3]"), std::string::npos) << m;
  EXPECT_NE(m.find("expected [2, 5, 3, 4]"), std::string::npos) << m;
  m = error_of([&] { gated_delta_rule(q, k, v.narrow(1, 0, 4), g, beta, h0); });
  EXPECT_NE(m.find("v has shape [2, 4, 3, 6]"), std::string::npos) << m;
  m = error_of([&] { gated_delta_rule(q, k, v, g.unsqueeze(-1), beta, h0); });
  EXPECT_NE(m.find("g has shape [2, 5, 3, 1]"), std::string::npos) << m;
  m = error_of([&] { gated_delta_rule(q, k, v, g, beta.narrow(2, 0, 2), h0); });
  EXPECT_NE(m.find("beta has shape [2, 5, 2]"), std::string::npos) << m;
  m = error_of([&] { gated_delta_rule(q, k, v, g, beta, h0.transpose(-1, -2)); });
  EXPECT_NE(m.find("initial_state has shape [2, 3, 6, 4], expected [2, 3, 4, 6]"),
            std::string::npos)
      << m;
  m = error_of([&] { gated_delta_rule(q[0], k, v, g, beta, h0); });
  EXPECT_NE(m.find("q has shape [5, 3, 4]"), std::string::npos) << m;
}

// Grouped value heads (v with HV = G H heads, fla's convention): value head h reads q, k head
// h / G. On every CPU backend, packed or not, the op equals itself on q and k repeated per value
// head, outputs and every gradient (the shared heads' gradients summed over their group).
TEST(GatedDeltaRule, GroupedValueHeadsEqualRepeatedQk) {
  const int64_t B = 1, T = 70, H = 2, G = 3, K = 5, V = 4;
  const Inputs grouped_heads = make_inputs({B, T, H * G, K, V}, 71);
  Inputs in = grouped_heads;
  in[0] = in[0].narrow(2, 0, H).contiguous();  // q, k: H heads
  in[1] = in[1].narrow(2, 0, H).contiguous();
  const at::Tensor cu = at::tensor({int64_t{0}, int64_t{23}, int64_t{70}});
  for (const GdnBackend backend : {GdnBackend::kReference, GdnBackend::kChunked}) {
    for (const bool packed : {false, true}) {
      SCOPED_TRACE(::testing::Message() << gdn_backend_name(backend) << (packed ? " packed" : ""));
      Inputs x = in;
      if (packed) x[5] = at::cat({x[5], 0.5 * x[5]});  // a state per sequence
      const OpsOptions ops{.gdn_backend = backend};
      const std::optional<at::Tensor> offsets =
          packed ? std::optional<at::Tensor>(cu) : std::nullopt;
      const Op grouped = [&](const Inputs& a) {
        return gated_delta_rule(a[0], a[1], a[2], a[3], a[4], a[5], -1.0, ops, offsets);
      };
      const Op repeated = [&](const Inputs& a) {
        return gated_delta_rule(a[0].repeat_interleave(G, 2), a[1].repeat_interleave(G, 2), a[2],
                                a[3], a[4], a[5], -1.0, ops, offsets);
      };
      const int64_t N = packed ? 2 : B;
      const at::Tensor d_o = at::randn({B, T, H * G, V}, at::kDouble);
      const at::Tensor d_state = at::randn({N, H * G, K, V}, at::kDouble);
      const auto got = outputs_and_grads(grouped, x, d_o, d_state);
      const auto want = outputs_and_grads(repeated, x, d_o, d_state);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(got[0].sizes(), (std::vector<int64_t>{B, T, H * G, V}));
      EXPECT_EQ(got[2].sizes(), (std::vector<int64_t>{B, T, H, K}));  // dq per q head
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_LT(relative_error(got[i], want[i]), 1e-12) << result_name(i);
      }
    }
  }
  const at::Tensor &q = in[0], &k = in[1], &v = in[2], &g = in[3], &beta = in[4];
  const std::string m =
      error_of([&] { gated_delta_rule(q, k, v.narrow(2, 0, 5), g, beta, std::nullopt, -1.0); });
  EXPECT_NE(m.find("v has shape [1, 70, 5, 4]"), std::string::npos) << m;
  EXPECT_NE(m.find("HV a multiple of q's H = 2"), std::string::npos) << m;
  const std::string m2 =
      error_of([&] { gated_delta_rule(q, k, v, g.narrow(2, 0, 2), beta, std::nullopt, -1.0); });
  EXPECT_NE(m2.find("g has shape [1, 70, 2], expected [1, 70, 6] [B, T, HV]"), std::string::npos)
      << m2;
}

TEST(GatedDeltaRule, ValidationErrorsNameDtypesAndDevices) {
  const Inputs in = make_inputs({1, 5, 2, 4, 3}, 67);
  const at::Tensor &q = in[0], &k = in[1], &v = in[2], &g = in[3], &beta = in[4], &h0 = in[5];
  std::string m = error_of([&] { gated_delta_rule(q, k, v, g.to(at::kInt), beta, h0); });
  EXPECT_NE(m.find("g has dtype Int"), std::string::npos) << m;
  m = error_of([&] { gated_delta_rule(q, k.to(at::kFloat), v, g, beta, h0); });
  EXPECT_NE(m.find("q, k and v have dtypes Double, Float, Double"), std::string::npos) << m;
  m = error_of([&] { gated_delta_rule(q, k, v, g, beta.to(at::Device(at::kMeta)), h0); });
  EXPECT_NE(m.find("beta is on meta, expected cpu"), std::string::npos) << m;
  m = error_of([&] { gated_delta_rule(q, k, v, g, at::Tensor(), h0); });
  EXPECT_NE(m.find("beta is undefined"), std::string::npos) << m;
}

TEST(GatedDeltaRule, CudaBackendOnCpuTensorsIsRefused) {
  const Inputs in = make_inputs({1, 5, 2, 4, 3}, 71);
  const std::string m = error_of([&] {
    gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0,
                     {.gdn_backend = GdnBackend::kCuda});
  });
  EXPECT_NE(m.find("backend cuda"), std::string::npos) << m;
}

}  // namespace
}  // namespace hypnos::ops
