// The chunked gated-delta-rule kernels (kernels/gdn_chunk_*.cu: prep, scans and chunk backward,
// tensor-core and CUDA-core paths) run from their own source under the CPU
// emulation of tests/emu/cuda_emu.h (mma.sync m16n8k16 bf16 and ldmatrix emulated on their fragment
// layouts), against the float64 per-step recurrence: output, final state and all six gradients at
// the tolerances of the GPU tests, for sleep windows (T = 24: padded rows), tail chunks, several
// chunks, every (K, V) of K in {64, 96, 128, 256} x V in {64, 128, 256}, strong gates, with and
// without an initial state. The GPU tests
// remain the check on real hardware; this one runs on every machine.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "gdn.h"  // the rewritten copies in the build tree (namespace hypnos::kernels_emu)
#include "ops/gated_delta_rule_backends.h"
#include "testing/numeric.h"

namespace hypnos {
namespace {

namespace K = hypnos::kernels_emu;
using testing::relative_error;

struct Case {
  int64_t batch, seq_len, heads;
  int dim;
  at::ScalarType dtype;
  bool with_initial_state;
  bool strong_gates = false;
  bool backward = true;    ///< false: inference (no u, chunk_states, a_inv; forward only)
  int scan_slice = 0;      ///< GdnParams::scan_slice: 0 automatic, 32, 64 or 128 forced
  int dim_v = 0;           ///< V when it differs from K (dim)
  bool cuda_core = false;  ///< bf16 inputs on the CUDA-core kernels (GdnKernel::kFp32)
  int v_dim() const { return dim_v ? dim_v : dim; }
};

std::string name_of(const Case& c) {
  return "B" + std::to_string(c.batch) + " T" + std::to_string(c.seq_len) + " H" +
         std::to_string(c.heads) + " K" + std::to_string(c.dim) + " V" + std::to_string(c.v_dim()) +
         " " + (c.dtype == at::kBFloat16 ? "bf16" : "fp32") + (c.with_initial_state ? " h0" : "") +
         (c.strong_gates ? " strong" : "") +
         (c.scan_slice ? " slice" + std::to_string(c.scan_slice) : "") +
         (c.cuda_core ? " cuda-core" : "");
}

void expect_close_to_recurrence(const Case& c) {
  SCOPED_TRACE(name_of(c));
  torch::manual_seed(c.seq_len * 7 + c.dim);
  const int64_t B = c.batch, T = c.seq_len, H = c.heads, Dk = c.dim, Dv = c.v_dim();
  const int64_t C = K::kGdnChunk, NC = (T + C - 1) / C;
  auto unit_rows = [](const at::Tensor& x) { return x / x.norm(2, {-1}, /*keepdim=*/true); };
  const at::Tensor q = unit_rows(at::randn({B, T, H, Dk})).to(c.dtype);
  const at::Tensor k = unit_rows(at::randn({B, T, H, Dk})).to(c.dtype);
  const at::Tensor v = at::randn({B, T, H, Dv}).to(c.dtype);
  const at::Tensor g =
      c.strong_gates ? -20.0 * at::rand({B, T, H}) : at::log_sigmoid(at::randn({B, T, H}));
  const at::Tensor beta = at::sigmoid(at::randn({B, T, H}));
  const at::Tensor h0 = c.with_initial_state ? 0.3 * at::randn({B, H, Dk, Dv}) : at::Tensor();
  const at::Tensor grad_o = at::randn({B, T, H, Dv}).to(c.dtype);
  const at::Tensor grad_final = at::randn({B, H, Dk, Dv});
  const double scale = 1.0 / std::sqrt(double(Dk));

  // The kernels, with the workspaces the LibTorch wrapper allocates.
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  // The typed workspaces: bf16 on the tensor-core kernels (bf16 inputs), fp32 otherwise.
  const auto typed = at::TensorOptions().dtype(c.cuda_core ? at::kFloat : c.dtype);
  at::Tensor o = at::empty({B, T, H, Dv}, q.options());
  at::Tensor final_state = at::empty({B, H, Dk, Dv}, f32);
  at::Tensor g_cum = at::empty({B, H, NC, C}, f32), w = at::empty({B, H, NC, C, Dk}, typed);
  at::Tensor u_tilde = at::empty({B, H, NC, C, Dv}, typed), u = at::empty({B, H, NC, C, Dv}, typed);
  at::Tensor attn = at::empty({B, H, NC, C, C}, typed), a_inv = at::empty({B, H, NC, C, C}, typed);
  at::Tensor chunk_states = at::empty({B, H, NC, Dk, Dv}, typed);
  K::GdnParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.g = g.data_ptr<float>();
  p.beta = beta.data_ptr<float>();
  p.initial_state = c.with_initial_state ? h0.data_ptr<float>() : nullptr;
  p.o = o.data_ptr();
  p.final_state = final_state.data_ptr<float>();
  p.g_cum = g_cum.data_ptr<float>();
  p.w = w.data_ptr();
  p.u_tilde = u_tilde.data_ptr();
  p.attn = attn.data_ptr();
  p.a_inv = c.backward ? a_inv.data_ptr() : nullptr;
  p.u = c.backward ? u.data_ptr() : nullptr;
  p.chunk_states = c.backward ? chunk_states.data_ptr() : nullptr;
  p.batch = B;
  p.seq_len = T;
  p.heads = H;
  p.head_dim_k = int(Dk);
  p.head_dim_v = int(Dv);
  p.scale = float(scale);
  p.dtype = c.dtype == at::kBFloat16 ? K::GdnDtype::kBFloat16 : K::GdnDtype::kFloat32;
  // fp32 inputs take the CUDA-core kernels regardless
  p.kernel = c.cuda_core ? K::GdnKernel::kFp32 : K::GdnKernel::kTensorCore;
  p.scan_slice = c.scan_slice;
  ASSERT_EQ(K::gdn_chunk_fwd(p, nullptr), cudaSuccess);
  if (!c.backward) {
    const auto ref = ops::detail::gated_delta_rule_reference(
        q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble), g.to(at::kDouble),
        beta.to(at::kDouble), c.with_initial_state ? h0.to(at::kDouble) : at::Tensor(), scale);
    EXPECT_LT(relative_error(o, ref.o), 5e-3) << "o";
    EXPECT_LT(relative_error(final_state, ref.final_state), 5e-3) << "final_state";
    return;
  }
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  at::Tensor dg = at::empty({B, T, H}, f32), dbeta = at::empty({B, T, H}, f32);
  at::Tensor dh0 = at::empty({B, H, Dk, Dv}, f32);
  at::Tensor grad_u = at::empty_like(u), grad_states = at::empty_like(chunk_states);
  p.grad_o = grad_o.data_ptr();
  p.grad_final_state = grad_final.data_ptr<float>();
  p.grad_q = dq.data_ptr();
  p.grad_k = dk.data_ptr();
  p.grad_v = dv.data_ptr();
  p.grad_g = dg.data_ptr<float>();
  p.grad_beta = dbeta.data_ptr<float>();
  p.grad_initial_state = c.with_initial_state ? dh0.data_ptr<float>() : nullptr;
  p.grad_u = grad_u.data_ptr();
  p.grad_chunk_states = grad_states.data_ptr();
  ASSERT_EQ(K::gdn_chunk_bwd(p, nullptr), cudaSuccess);

  // The recurrence in float64 on the same (rounded) values.
  auto leaf = [](const at::Tensor& t) { return t.to(at::kDouble).detach().requires_grad_(true); };
  const at::Tensor qr = leaf(q), kr = leaf(k), vr = leaf(v), gr = leaf(g), br = leaf(beta);
  const at::Tensor hr = c.with_initial_state ? leaf(h0) : at::Tensor();
  const auto ref = ops::detail::gated_delta_rule_reference(qr, kr, vr, gr, br, hr, scale);
  std::vector<at::Tensor> leaves{qr, kr, vr, gr, br};
  if (c.with_initial_state) leaves.push_back(hr);
  const auto grads = torch::autograd::grad({ref.o, ref.final_state}, leaves,
                                           {grad_o.to(at::kDouble), grad_final.to(at::kDouble)});

  // The GPU tests' tolerances: fla's for 16-bit inputs, tighter for the fp32 path.
  const bool bf16 = c.dtype == at::kBFloat16;
  const double tol_out = bf16 ? 5e-3 : 1e-3, tol_qkv = bf16 ? 8e-3 : 1e-3,
               tol_gb = bf16 ? 2e-2 : 2e-3;
  auto check = [](const char* name, const at::Tensor& got, const at::Tensor& want, double tol) {
    EXPECT_FALSE(got.isnan().any().item<bool>()) << name << " has NaN";
    const double error = relative_error(got, want);
    EXPECT_LT(error, tol) << name;
    std::printf("  %-11s relative RMS error %.2e (limit %.0e)\n", name, error, tol);
  };
  std::printf("B %lld T %lld H %lld K %lld V %lld %s%s%s, slice %d:\n", (long long)B, (long long)T,
              (long long)H, (long long)Dk, (long long)Dv, bf16 ? "bf16" : "fp32",
              c.with_initial_state ? ", h0" : "", c.strong_gates ? ", g to -20" : "", c.scan_slice);
  check("o", o, ref.o, tol_out);
  check("final_state", final_state, ref.final_state, tol_out);
  check("dq", dq, grads[0], tol_qkv);
  check("dk", dk, grads[1], tol_qkv);
  check("dv", dv, grads[2], tol_qkv);
  if (!p.bf16_workspaces()) {
    check("dg", dg, grads[3], tol_gb);
  } else {
    // The last token's dg holds gamma_C <S, dS> over the whole K x V state, S entering the last
    // chunk and dS leaving it, read from their bf16 copies (the saved states, as fla saves them):
    // its error is a sum of K V rounding errors, each a relative error of at most u = 2^-9 per
    // copy, of standard deviation u / sqrt(3), so about sqrt(2 / 3) u ||S * dS|| for the two
    // copies; at K x V = 32,768 with a unit-normal dS (T = 70, one head) it can outweigh every
    // other token's dg together. That token is held to six of those standard deviations plus the
    // error fla's tolerance allows the whole tensor, the others to fla's tolerance.
    using at::indexing::Slice;
    check("dg", dg.index({Slice(), Slice(0, T - 1)}), grads[3].index({Slice(), Slice(0, T - 1)}),
          tol_gb);
    const at::Tensor s_last = chunk_states.index({Slice(), Slice(), NC - 1}).to(at::kDouble);
    const at::Tensor bound = 6 * std::sqrt(2.0 / 3.0) * std::ldexp(1.0, -9) *
                             (s_last * grad_final.to(at::kDouble)).norm(2, {-2, -1});  // [B, H]
    const at::Tensor last_error =
        (dg.index({Slice(), T - 1}).to(at::kDouble) - grads[3].index({Slice(), T - 1})).abs();
    const double budget = tol_gb * grads[3].norm().item<double>();
    EXPECT_TRUE((last_error <= bound + budget).all().item<bool>())
        << "dg at the last token: error " << last_error << " over the state rounding's " << bound;
    std::printf("  %-11s error %.2e (bound from the bf16 state copies %.2e)\n", "dg[T - 1]",
                last_error.max().item<double>(), bound.min().item<double>());
  }
  check("dbeta", dbeta, grads[4], tol_gb);
  if (c.with_initial_state) check("dh0", dh0, grads[5], tol_qkv);
}

}  // namespace

TEST(GdnChunkEmulated, TensorCoreKernelsMatchTheRecurrence) {
  for (const Case& c :
       {Case{2, 24, 2, 64, at::kBFloat16, true}, Case{1, 37, 2, 64, at::kBFloat16, false},
        Case{1, 130, 1, 64, at::kBFloat16, true}, Case{1, 70, 1, 128, at::kBFloat16, true},
        Case{1, 24, 2, 64, at::kBFloat16, true, /*strong_gates=*/true}}) {
    expect_close_to_recurrence(c);
  }
}

// The scans' CTA widths (32 state columns on 4 warps, 64 on 8, a whole D = 128 head on 16),
// whichever the automatic choice would take at these sizes.
TEST(GdnChunkEmulated, TensorCoreScansMatchTheRecurrenceAtEverySliceWidth) {
  for (const int slice : {32, 64, 128}) {
    for (Case c :
         {Case{1, 70, 2, 64, at::kBFloat16, true}, Case{1, 130, 1, 128, at::kBFloat16, true}}) {
      c.scan_slice = slice;
      expect_close_to_recurrence(c);
    }
  }
}

TEST(GdnChunkEmulated, ForwardWithoutBackwardWorkspacesMatchesTheRecurrence) {
  Case c{1, 70, 2, 64, at::kBFloat16, true};
  c.backward = false;
  expect_close_to_recurrence(c);
}

TEST(GdnChunkEmulated, CudaCoreKernelsMatchTheRecurrence) {
  for (const Case& c :
       {Case{2, 24, 2, 64, at::kFloat, true}, Case{1, 130, 1, 64, at::kFloat, false}}) {
    expect_close_to_recurrence(c);
  }
}

// Every (K, V) the kernels are built for (gdn_dispatch.cuh's GdnHeadDims), Jet-Nemotron's
// 96 x 256 among them: two chunks with a tail and an initial state, forward and backward.
constexpr int kHeadDimsK[] = {64, 96, 128, 256};
constexpr int kHeadDimsV[] = {64, 128, 256};

TEST(GdnChunkEmulated, TensorCoreKernelsMatchTheRecurrenceAtEveryHeadDimPair) {
  for (const int dk : kHeadDimsK) {
    for (const int dv : kHeadDimsV) {
      Case c{1, 70, 1, dk, at::kBFloat16, true};
      c.dim_v = dv;
      expect_close_to_recurrence(c);
    }
  }
}

TEST(GdnChunkEmulated, CudaCoreKernelsMatchTheRecurrenceAtEveryHeadDimPair) {
  for (const int dk : kHeadDimsK) {
    for (const int dv : kHeadDimsV) {
      Case c{1, 70, 1, dk, dk == dv ? at::kFloat : at::kBFloat16, true};
      c.dim_v = dv;
      c.cuda_core = c.dtype == at::kBFloat16;  // bf16 inputs on the fp32 kernels at half the pairs
      expect_close_to_recurrence(c);
    }
  }
}

}  // namespace hypnos
