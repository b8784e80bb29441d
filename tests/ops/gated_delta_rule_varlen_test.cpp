// Packed variable-length batches (cu_seqlens) in the gated delta rule: a packed batch equals each
// sequence run alone (outputs, final states and every gradient) on both CPU backends, the chunked
// backend's packed backward agrees with finite differences, and bad offsets are refused naming
// cu_seqlens.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "hypnos/ops/gated_delta_rule.h"
#include "ops/gated_delta_rule_backends.h"
#include "testing/errors.h"
#include "testing/numeric.h"

namespace hypnos::ops {
namespace {

using hypnos::testing::gradient_check_errors;
using hypnos::testing::relative_error;

// {q, k, v, g, beta, initial_state}; initial_state may be undefined.
using Inputs = std::vector<at::Tensor>;
const char* const kResultNames[] = {"o",  "final_state", "dq",    "dk",
                                    "dv", "dg",          "dbeta", "dinitial_state"};

// Sequences of 1, 63, 64, 65 and 130 tokens: one token, a partial chunk, one full chunk, a chunk
// and one token, two chunks and two tokens (C = 64); their chunk counts reorder them in the scan.
const std::vector<int64_t> kLengths = {1, 63, 64, 65, 130};

std::vector<int64_t> offsets_of(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> cu = {0};
  for (int64_t n : lengths) cu.push_back(cu.back() + n);
  return cu;
}

at::Tensor cu_tensor(const std::vector<int64_t>& cu, at::ScalarType dtype = at::kLong) {
  return at::tensor(cu, at::TensorOptions().dtype(at::kLong)).to(dtype);
}

// Packed inputs of B = 1 in fla's test distribution (unit-norm q and k, g = logsigmoid(randn),
// beta in (0, 1)); initial_state [N, H, K, V] when with_state. K != V on purpose.
Inputs packed_inputs(const std::vector<int64_t>& lengths, int64_t H, int64_t K, int64_t V,
                     uint64_t seed, at::ScalarType dtype, bool with_state) {
  const int64_t T = offsets_of(lengths).back(), N = static_cast<int64_t>(lengths.size());
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  auto unit = [](const at::Tensor& x) { return x / x.norm(2, -1, /*keepdim=*/true); };
  Inputs in = {unit(at::randn({1, T, H, K}, gen, opt)),
               unit(at::randn({1, T, H, K}, gen, opt)),
               at::randn({1, T, H, V}, gen, opt),
               at::log_sigmoid(at::randn({1, T, H}, gen, opt)),
               at::rand({1, T, H}, gen, opt),
               with_state ? 0.3 * at::randn({N, H, K, V}, gen, opt) : at::Tensor()};
  for (at::Tensor& x : in) {
    if (x.defined()) x = x.to(dtype);
  }
  return in;
}

using Op = std::function<GatedDeltaRuleOutput(const Inputs&, const std::vector<int64_t>& cu)>;

Op entry_op(GdnBackend backend) {
  return [backend](const Inputs& x, const std::vector<int64_t>& cu) {
    std::optional<at::Tensor> h0;
    if (x[5].defined()) h0 = x[5];
    std::optional<at::Tensor> offsets;
    if (!cu.empty()) offsets = cu_tensor(cu, at::kInt);
    return gated_delta_rule(x[0], x[1], x[2], x[3], x[4], h0, -1.0, {.gdn_backend = backend},
                            offsets);
  };
}

// {o, final_state, then the gradient of every defined input} of <o, d_o> + <S, d_state>.
std::vector<at::Tensor> outputs_and_grads(const Op& op, const Inputs& in,
                                          const std::vector<int64_t>& cu, const at::Tensor& d_o,
                                          const at::Tensor& d_state) {
  Inputs leaves;
  std::vector<at::Tensor> wrt;
  for (const at::Tensor& x : in) {
    leaves.push_back(x.defined() ? x.detach().clone().requires_grad_(true) : x);
    if (x.defined()) wrt.push_back(leaves.back());
  }
  const GatedDeltaRuleOutput out = op(leaves, cu);
  at::Tensor loss = (out.final_state * d_state).sum();
  if (d_o.defined()) loss = loss + (out.o * d_o).sum();
  std::vector<at::Tensor> result = {out.o.detach(), out.final_state.detach()};
  // q reaches only o: with o unused the reference leaves it out of the graph (a zero gradient).
  const std::vector<at::Tensor> grads = torch::autograd::grad(
      {loss}, wrt, /*grad_outputs=*/{}, /*retain_graph=*/false, /*create_graph=*/false,
      /*allow_unused=*/true);
  for (size_t i = 0; i < grads.size(); ++i) {
    result.push_back(grads[i].defined() ? grads[i] : at::zeros_like(wrt[i]));
  }
  return result;
}

// The same results computed one sequence at a time, each alone (no cu_seqlens), under its slice
// of the cotangents, then put back together in the packed layout.
std::vector<at::Tensor> each_alone(const Op& op, const Inputs& in, const std::vector<int64_t>& cu,
                                   const at::Tensor& d_o, const at::Tensor& d_state) {
  std::vector<std::vector<at::Tensor>> parts;
  for (size_t i = 0; i + 1 < cu.size(); ++i) {
    const int64_t start = cu[i], n = cu[i + 1] - cu[i];
    const auto i64 = static_cast<int64_t>(i);
    Inputs alone;
    for (size_t a = 0; a < 5; ++a) alone.push_back(in[a].narrow(1, start, n));
    alone.push_back(in[5].defined() ? in[5].narrow(0, i64, 1) : at::Tensor());
    parts.push_back(outputs_and_grads(op, alone, {}, d_o.defined() ? d_o.narrow(1, start, n) : d_o,
                                      d_state.narrow(0, i64, 1)));
  }
  std::vector<at::Tensor> joined;
  for (size_t r = 0; r < parts[0].size(); ++r) {
    // o and the token-wise gradients join along T; final_state and d initial_state along N.
    const bool per_sequence = r == 1 || r == 7;
    std::vector<at::Tensor> pieces;
    for (const auto& p : parts) pieces.push_back(p[r]);
    joined.push_back(at::cat(pieces, per_sequence ? 0 : 1));
  }
  return joined;
}

std::pair<at::Tensor, at::Tensor> cotangents(const Inputs& in, int64_t N, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto opt = at::TensorOptions().dtype(in[0].scalar_type());
  const int64_t T = in[0].size(1), H = in[0].size(2), K = in[0].size(3), V = in[2].size(3);
  return {at::randn({1, T, H, V}, gen, opt.dtype(at::kDouble)).to(opt),
          at::randn({N, H, K, V}, gen, opt.dtype(at::kDouble)).to(opt)};
}

// "1.23e-12": an error as the test records it.
std::string scientific(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2e", x);
  return text;
}

// Compares result by result, records each error (visible with --gtest_output=xml) and returns the
// largest.
double expect_close(const std::vector<at::Tensor>& got, const std::vector<at::Tensor>& want,
                    double tolerance, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  double worst = 0.0;
  for (size_t r = 0; r < std::min(got.size(), want.size()); ++r) {
    EXPECT_EQ(got[r].sizes(), want[r].sizes()) << what << " " << kResultNames[r];
    const double e = relative_error(got[r], want[r]);
    EXPECT_LT(e, tolerance) << what << " " << kResultNames[r];
    ::testing::Test::RecordProperty(what + "." + kResultNames[r], scientific(e));
    worst = std::max(worst, e);
  }
  return worst;
}

// ---- packed == each sequence alone, both backends, double and fp32 -----------------------------

class GatedDeltaRuleVarlen
    : public ::testing::TestWithParam<std::tuple<GdnBackend, at::ScalarType, bool>> {};

TEST_P(GatedDeltaRuleVarlen, PackedEqualsEachSequenceAloneWithEveryGradient) {
  const auto [backend, dtype, with_state] = GetParam();
  const std::vector<int64_t> cu = offsets_of(kLengths);
  const Inputs in = packed_inputs(kLengths, /*H=*/2, /*K=*/8, /*V=*/6, 301, dtype, with_state);
  const auto [d_o, d_state] = cotangents(in, static_cast<int64_t>(kLengths.size()), 302);
  const Op op = entry_op(backend);
  const auto packed = outputs_and_grads(op, in, cu, d_o, d_state);
  const auto alone = each_alone(op, in, cu, d_o, d_state);
  ASSERT_EQ(packed.size(), with_state ? 8u : 7u);
  EXPECT_EQ(packed[0].scalar_type(), dtype);
  // fp32: the packed chunked run chunks a 1-token sequence at C = 64 and alone at C = 1, so the
  // rounding differs; double leaves only the order of summation.
  expect_close(packed, alone, dtype == at::kDouble ? 1e-10 : 1e-5, "packed_vs_alone");
}

INSTANTIATE_TEST_SUITE_P(
    BackendsDtypesStates, GatedDeltaRuleVarlen,
    ::testing::Combine(::testing::Values(GdnBackend::kReference, GdnBackend::kChunked),
                       ::testing::Values(at::kDouble, at::kFloat), ::testing::Bool()),
    [](const auto& info) {
      return std::string(gdn_backend_name(std::get<0>(info.param))) +
             (std::get<1>(info.param) == at::kDouble ? "_double" : "_float") +
             (std::get<2>(info.param) ? "_with_state" : "_zero_state");
    });

// ---- the packed chunked backend against the packed reference, chunk lengths that cut differently

class GatedDeltaRuleVarlenChunk : public ::testing::TestWithParam<int64_t> {};

TEST_P(GatedDeltaRuleVarlenChunk, ChunkedPackedEqualsReferencePacked) {
  const int64_t chunk = GetParam();
  const std::vector<int64_t> cu = offsets_of(kLengths);
  const Inputs in = packed_inputs(kLengths, 2, 8, 6, 311, at::kDouble, /*with_state=*/true);
  const auto [d_o, d_state] = cotangents(in, static_cast<int64_t>(kLengths.size()), 312);
  const double scale = 0.4;
  const Op reference = [&](const Inputs& x, const std::vector<int64_t>& offsets) {
    return detail::gated_delta_rule_reference(x[0], x[1], x[2], x[3], x[4], x[5], scale, offsets);
  };
  const Op chunked = [&](const Inputs& x, const std::vector<int64_t>& offsets) {
    return detail::gated_delta_rule_chunked(x[0], x[1], x[2], x[3], x[4], x[5], scale, chunk,
                                            offsets);
  };
  expect_close(outputs_and_grads(chunked, in, cu, d_o, d_state),
               outputs_and_grads(reference, in, cu, d_o, d_state), 1e-10,
               "chunked_vs_reference_at_chunk_" + std::to_string(chunk));
  // o unused: its gradient reaches the backward undefined and counts as zero; only the final
  // states' gradient flows back through every sequence.
  expect_close(outputs_and_grads(chunked, in, cu, at::Tensor(), d_state),
               outputs_and_grads(reference, in, cu, at::Tensor(), d_state), 1e-10,
               "final_state_only_at_chunk_" + std::to_string(chunk));
}

INSTANTIATE_TEST_SUITE_P(Chunks, GatedDeltaRuleVarlenChunk, ::testing::Values(16, 64));

// ---- the packed chunked backward against central finite differences ---------------------------

TEST(GatedDeltaRuleVarlen, ChunkedPackedGradientsMatchCentralDifferences) {
  // Chunks of 4 over sequences of 1, 5, 17 and 3 tokens: one to five chunks each, partial last
  // chunks, and a scan order (17, 5, 1, 3) that is not the packed order.
  const std::vector<int64_t> lengths = {1, 5, 17, 3};
  const std::vector<int64_t> cu = offsets_of(lengths);
  const Inputs in = packed_inputs(lengths, /*H=*/1, /*K=*/3, /*V=*/2, 321, at::kDouble, true);
  const auto [d_o, d_state] = cotangents(in, static_cast<int64_t>(lengths.size()), 322);
  const auto f = [&](const std::vector<at::Tensor>& x) {
    const auto out =
        detail::gated_delta_rule_chunked(x[0], x[1], x[2], x[3], x[4], x[5], 0.5, /*chunk=*/4, cu);
    return (out.o * d_o).sum() + (out.final_state * d_state).sum();
  };
  const std::vector<double> errors = gradient_check_errors(f, in, /*h=*/1e-6);
  const char* names[] = {"q", "k", "v", "g", "beta", "initial_state"};
  for (size_t i = 0; i < errors.size(); ++i) {
    EXPECT_LT(errors[i], 1e-7) << "d" << names[i];
    RecordProperty(std::string("finite_differences.d") + names[i], scientific(errors[i]));
  }
}

// ---- cu_seqlens as the entry point takes it -----------------------------------------------------

TEST(GatedDeltaRuleVarlen, Int32AndInt64OffsetsAgreeAndOneSequenceIsTheUnpackedCall) {
  const std::vector<int64_t> lengths = {7, 70};
  const Inputs in = packed_inputs(lengths, 2, 4, 5, 331, at::kDouble, true);
  const std::vector<int64_t> cu = offsets_of(lengths);
  for (GdnBackend backend : {GdnBackend::kAuto, GdnBackend::kReference, GdnBackend::kChunked}) {
    const OpsOptions ops{.gdn_backend = backend};
    const auto a = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0, ops,
                                    cu_tensor(cu, at::kInt));
    const auto b = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0, ops,
                                    cu_tensor(cu, at::kLong));
    EXPECT_TRUE(at::equal(a.o, b.o)) << gdn_backend_name(backend);
    EXPECT_TRUE(at::equal(a.final_state, b.final_state)) << gdn_backend_name(backend);
    EXPECT_EQ(a.final_state.sizes(), at::IntArrayRef({2, 2, 4, 5}));
    // cu_seqlens = [0, T] is the plain call.
    const at::Tensor h0 = in[5].narrow(0, 0, 1);
    const auto one = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], h0, -1.0, ops,
                                      cu_tensor({0, in[0].size(1)}));
    const auto plain = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], h0, -1.0, ops);
    EXPECT_LT(relative_error(one.o, plain.o), 1e-13) << gdn_backend_name(backend);
    EXPECT_LT(relative_error(one.final_state, plain.final_state), 1e-13)
        << gdn_backend_name(backend);
  }
}

// ---- validation ---------------------------------------------------------------------------------

// The op's validation error ("" when nothing was thrown).
std::string error_of(const std::function<void()>& call) {
  return testing::error_message<std::invalid_argument>(call);
}

TEST(GatedDeltaRuleVarlen, BadOffsetsAreRefusedNamingCuSeqlens) {
  const Inputs in = packed_inputs({4, 6}, 2, 4, 3, 341, at::kDouble, true);
  const auto run = [&](const at::Tensor& cu, const at::Tensor& h0) {
    return error_of([&] { gated_delta_rule(in[0], in[1], in[2], in[3], in[4], h0, -1.0, {}, cu); });
  };
  const struct {
    at::Tensor cu;
    std::string message;
  } cases[] = {
      {cu_tensor({0, 4, 9}),
       "cu_seqlens must start at 0 and end at T = 10 (q's length), got 0 ... 9"},
      {cu_tensor({1, 4, 10}), "must start at 0 and end at T = 10"},
      {cu_tensor({0, 4, 4, 10}), "cu_seqlens[1] = 4 and cu_seqlens[2] = 4: sequence 1 is empty"},
      {cu_tensor({0, 6, 4, 10}), "sequence 1 is negative"},
      {cu_tensor({0}), "cu_seqlens has shape [1], expected 1-D [N + 1]"},
      {cu_tensor({0, 4, 10}).unsqueeze(0), "cu_seqlens has shape [1, 3]"},
      {cu_tensor({0, 4, 10}, at::kFloat), "cu_seqlens has dtype Float, expected int32 or int64"},
      {at::Tensor(), "cu_seqlens is an undefined tensor"},
  };
  for (const auto& c : cases) {
    const std::string m = run(c.cu, in[5]);
    EXPECT_NE(m.find(c.message), std::string::npos) << "got: " << m;
  }
  // initial_state has one state per sequence.
  std::string m = run(cu_tensor({0, 4, 10}), in[5].narrow(0, 0, 1));
  EXPECT_NE(m.find("initial_state has shape [1, 2, 4, 3], expected [2, 2, 4, 3] [N, HV, K, V] "
                   "(N = 2 sequences in cu_seqlens)"),
            std::string::npos)
      << m;
  // Packed sequences need B = 1.
  const at::Tensor q2 = in[0].expand({2, -1, -1, -1});
  m = error_of([&] {
    gated_delta_rule(q2, q2, in[2].expand({2, -1, -1, -1}), in[3].expand({2, -1, -1}),
                     in[4].expand({2, -1, -1}), std::nullopt, -1.0, {}, cu_tensor({0, 4, 10}));
  });
  EXPECT_NE(m.find("with cu_seqlens the batch must be 1 (sequences packed along T), got B = 2"),
            std::string::npos)
      << m;
  // The CUDA kernels take no cu_seqlens yet: an explicit cuda says so (here: CPU tensors first).
  m = error_of([&] {
    gated_delta_rule(in[0], in[1], in[2], in[3], in[4], in[5], -1.0,
                     {.gdn_backend = GdnBackend::kCuda}, cu_tensor({0, 4, 10}));
  });
  EXPECT_NE(m.find("backend cuda"), std::string::npos) << m;
  EXPECT_NE(m.find("packed (cu_seqlens)"), std::string::npos) << m;
}

}  // namespace
}  // namespace hypnos::ops
