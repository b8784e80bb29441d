// The chunked gated-delta-rule kernels (kernels/gdn_chunk_*.cu: prep, scans and chunk backward,
// tensor-core and CUDA-core paths) run from their own source under the CPU
// emulation of tests/emu/cuda_emu.h (mma.sync m16n8k16 bf16 and ldmatrix emulated on their fragment
// layouts), against the float64 per-step recurrence: output, final state and all six gradients at
// the tolerances of the GPU tests, for sleep windows (T = 24: padded rows), tail chunks, several
// chunks, every (K, V) of K in {64, 96, 128, 256} x V in {64, 128, 256}, strong gates, with and
// without an initial state, and packed sequences (cu_seqlens) against each sequence alone. The GPU
// tests remain the check on real hardware; this one runs on every machine. Grouped value heads
// (fewer q, k heads than v heads) against the recurrence on repeated q, k.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

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
  /// Packed sequences of these lengths (cu_seqlens; batch 1, seq_len their sum) instead of
  /// batch rows of seq_len tokens.
  std::vector<int64_t> packed = {};
  int64_t heads_qk = 0;  ///< heads of q and k when fewer than `heads` (grouped value heads)
  /// GdnParams::forward_output: o in the scan (auto) or from the separate output kernel.
  K::GdnForwardOutput forward_output = K::GdnForwardOutput::kAuto;
  int v_dim() const { return dim_v ? dim_v : dim; }
  int64_t qk_heads() const { return heads_qk ? heads_qk : heads; }
};

/// Where the sequences' tokens and chunks start: N + 1 token offsets (cu_seqlens) and chunk
/// offsets (GdnParams::chunk_offsets), for packed sequences or for B rows of T tokens alike.
struct SequenceOffsets {
  std::vector<int64_t> tokens{0}, chunks{0};
  explicit SequenceOffsets(const std::vector<int64_t>& lengths) {
    for (const int64_t n : lengths) {
      tokens.push_back(tokens.back() + n);
      chunks.push_back(chunks.back() + (n + K::kGdnChunk - 1) / K::kGdnChunk);
    }
  }
  int64_t sequences() const { return int64_t(tokens.size()) - 1; }
};

std::string name_of(const Case& c) {
  std::string packed;
  for (const int64_t n : c.packed)
    packed += (packed.empty() ? " packed " : ",") + std::to_string(n);
  return "B" + std::to_string(c.batch) + " T" + std::to_string(c.seq_len) + packed + " H" +
         std::to_string(c.heads) + (c.heads_qk ? " Hqk" + std::to_string(c.heads_qk) : "") + " K" +
         std::to_string(c.dim) + " V" + std::to_string(c.v_dim()) + " " +
         (c.dtype == at::kBFloat16 ? "bf16" : "fp32") + (c.with_initial_state ? " h0" : "") +
         (c.strong_gates ? " strong" : "") +
         (c.scan_slice ? " slice" + std::to_string(c.scan_slice) : "") +
         (c.cuda_core ? " cuda-core" : "");
}

/// A case's inputs: q, k, v, g, beta (and grad_o) as [B, T, H, *] (B = 1 when packed), the
/// states and grad_final as [N, H, K, V] for its N sequences.
struct Inputs {
  at::Tensor q, k, v, g, beta, h0, grad_o, grad_final;
};

Inputs make_inputs(const Case& c, int64_t sequences) {
  torch::manual_seed(c.seq_len * 7 + c.dim);
  const int64_t B = c.batch, T = c.seq_len, H = c.heads, Dk = c.dim, Dv = c.v_dim();
  auto unit_rows = [](const at::Tensor& x) { return x / x.norm(2, {-1}, /*keepdim=*/true); };
  Inputs in;
  in.q = unit_rows(at::randn({B, T, c.qk_heads(), Dk})).to(c.dtype);
  in.k = unit_rows(at::randn({B, T, c.qk_heads(), Dk})).to(c.dtype);
  in.v = at::randn({B, T, H, Dv}).to(c.dtype);
  in.g = c.strong_gates ? -20.0 * at::rand({B, T, H}) : at::log_sigmoid(at::randn({B, T, H}));
  in.beta = at::sigmoid(at::randn({B, T, H}));
  in.h0 = c.with_initial_state ? 0.3 * at::randn({sequences, H, Dk, Dv}) : at::Tensor();
  in.grad_o = at::randn({B, T, H, Dv}).to(c.dtype);
  in.grad_final = at::randn({sequences, H, Dk, Dv});
  return in;
}

/// What the kernels wrote: the outputs, the gradients (when c.backward) and the saved states.
struct Outputs {
  at::Tensor o, final_state, dq, dk, dv, dg, dbeta, dh0, chunk_states;
};

/// The forward (and, when c.backward, the backward) kernels on `in`, with the workspaces the
/// LibTorch wrapper allocates.
Outputs run_kernels(const Case& c, const SequenceOffsets& seqs, const Inputs& in) {
  const int64_t B = c.batch, T = c.seq_len, H = c.heads, Dk = c.dim, Dv = c.v_dim();
  const int64_t C = K::kGdnChunk, N = seqs.sequences(), NW = H * seqs.chunks.back();
  const bool packed = !c.packed.empty();
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  // The typed workspaces: bf16 on the tensor-core kernels (bf16 inputs), fp32 otherwise.
  const auto typed = at::TensorOptions().dtype(c.cuda_core ? at::kFloat : c.dtype);
  Outputs out;
  out.o = at::empty({B, T, H, Dv}, in.q.options());
  out.final_state = at::empty({N, H, Dk, Dv}, f32);
  at::Tensor g_cum = at::empty({NW, C}, f32), w = at::empty({NW, C, Dk}, typed);
  at::Tensor u_tilde = at::empty({NW, C, Dv}, typed), u = at::empty({NW, C, Dv}, typed);
  at::Tensor attn = at::empty({NW, C, C}, typed), a_inv = at::empty({NW, C, C}, typed);
  out.chunk_states = at::empty({NW, Dk, Dv}, typed);
  const at::Tensor cu_seqlens = at::tensor(seqs.tokens, at::kLong);
  const at::Tensor chunk_offsets = at::tensor(seqs.chunks, at::kLong);
  K::GdnParams p;
  p.q = in.q.data_ptr();
  p.k = in.k.data_ptr();
  p.v = in.v.data_ptr();
  p.g = in.g.data_ptr<float>();
  p.beta = in.beta.data_ptr<float>();
  p.initial_state = c.with_initial_state ? in.h0.data_ptr<float>() : nullptr;
  p.o = out.o.data_ptr();
  p.final_state = out.final_state.data_ptr<float>();
  p.g_cum = g_cum.data_ptr<float>();
  p.w = w.data_ptr();
  p.u_tilde = u_tilde.data_ptr();
  p.attn = attn.data_ptr();
  // U and the chunk states for a backward, and for the separate output kernel, which reads them.
  const bool states = c.backward || c.forward_output == K::GdnForwardOutput::kSeparate;
  p.a_inv = c.backward ? a_inv.data_ptr() : nullptr;
  p.u = states ? u.data_ptr() : nullptr;
  p.chunk_states = states ? out.chunk_states.data_ptr() : nullptr;
  p.forward_output = c.forward_output;
  if (packed) {
    p.cu_seqlens = cu_seqlens.data_ptr<int64_t>();
    p.chunk_offsets = chunk_offsets.data_ptr<int64_t>();
  }
  p.batch = packed ? N : B;
  p.seq_len = packed ? *std::max_element(c.packed.begin(), c.packed.end()) : T;
  p.heads = H;
  p.heads_qk = c.heads_qk;
  p.head_dim_k = int(Dk);
  p.head_dim_v = int(Dv);
  p.scale = float(1.0 / std::sqrt(double(Dk)));
  p.dtype = c.dtype == at::kBFloat16 ? K::GdnDtype::kBFloat16 : K::GdnDtype::kFloat32;
  // fp32 inputs take the CUDA-core kernels regardless
  p.kernel = c.cuda_core ? K::GdnKernel::kFp32 : K::GdnKernel::kTensorCore;
  p.scan_slice = c.scan_slice;
  EXPECT_EQ(K::gdn_chunk_fwd(p, nullptr), cudaSuccess);
  if (!c.backward) return out;
  out.dq = at::empty({B, T, H, Dk}, in.q.options());  // per value head
  out.dk = at::empty({B, T, H, Dk}, in.k.options());
  out.dv = at::empty_like(in.v);
  out.dg = at::empty({B, T, H}, f32);
  out.dbeta = at::empty({B, T, H}, f32);
  out.dh0 = at::empty({N, H, Dk, Dv}, f32);
  at::Tensor grad_u = at::empty_like(u), grad_states = at::empty_like(out.chunk_states);
  p.grad_o = in.grad_o.data_ptr();
  p.grad_final_state = in.grad_final.data_ptr<float>();
  p.grad_q = out.dq.data_ptr();
  p.grad_k = out.dk.data_ptr();
  p.grad_v = out.dv.data_ptr();
  p.grad_g = out.dg.data_ptr<float>();
  p.grad_beta = out.dbeta.data_ptr<float>();
  p.grad_initial_state = c.with_initial_state ? out.dh0.data_ptr<float>() : nullptr;
  p.grad_u = grad_u.data_ptr();
  p.grad_chunk_states = grad_states.data_ptr();
  EXPECT_EQ(K::gdn_chunk_bwd(p, nullptr), cudaSuccess);
  return out;
}

/// The sequences of a case: B rows of T tokens, or its packed lengths (B = 1).
SequenceOffsets sequences_of(const Case& c) {
  return SequenceOffsets(c.packed.empty() ? std::vector<int64_t>(c.batch, c.seq_len) : c.packed);
}

void expect_close_to_recurrence(const Case& c) {
  SCOPED_TRACE(name_of(c));
  const int64_t B = c.batch, T = c.seq_len, H = c.heads, Dk = c.dim, Dv = c.v_dim();
  const bool packed = !c.packed.empty();
  ASSERT_TRUE(!packed || B == 1);
  const SequenceOffsets seqs = sequences_of(c);
  ASSERT_EQ(seqs.tokens.back(), B * T) << "packed lengths must sum to seq_len";
  const int64_t N = seqs.sequences();
  const Inputs in = make_inputs(c, N);
  const at::Tensor &q = in.q, &k = in.k, &v = in.v, &g = in.g, &beta = in.beta, &h0 = in.h0,
                   &grad_o = in.grad_o, &grad_final = in.grad_final;
  const double scale = 1.0 / std::sqrt(double(Dk));
  // Grouped value heads: the recurrence reads each q, k head once per value head of its group;
  // the kernels' dq, dk (per value head) summed over each group are the q, k heads' gradients.
  const int64_t group = H / c.qk_heads();
  auto per_value_head = [&](const at::Tensor& x) { return x.repeat_interleave(group, 2); };
  auto per_qk_head = [&](const at::Tensor& x) {
    return x.to(at::kDouble).reshape({B, T, c.qk_heads(), group, Dk}).sum(3);
  };
  const Outputs out = run_kernels(c, seqs, in);
  const at::Tensor &o = out.o, &final_state = out.final_state, &chunk_states = out.chunk_states;
  const std::vector<int64_t> ref_offsets = packed ? seqs.tokens : std::vector<int64_t>{};
  if (!c.backward) {
    const auto ref = ops::detail::gated_delta_rule_reference(
        per_value_head(q.to(at::kDouble)), per_value_head(k.to(at::kDouble)), v.to(at::kDouble),
        g.to(at::kDouble), beta.to(at::kDouble),
        c.with_initial_state ? h0.to(at::kDouble) : at::Tensor(), scale, ref_offsets);
    EXPECT_LT(relative_error(o, ref.o), 5e-3) << "o";
    EXPECT_LT(relative_error(final_state, ref.final_state), 5e-3) << "final_state";
    return;
  }
  const at::Tensor &dq = out.dq, &dk = out.dk, &dv = out.dv, &dg = out.dg, &dbeta = out.dbeta,
                   &dh0 = out.dh0;

  // The recurrence in float64 on the same (rounded) values.
  auto leaf = [](const at::Tensor& t) { return t.to(at::kDouble).detach().requires_grad_(true); };
  const at::Tensor qr = leaf(q), kr = leaf(k), vr = leaf(v), gr = leaf(g), br = leaf(beta);
  const at::Tensor hr = c.with_initial_state ? leaf(h0) : at::Tensor();
  const auto ref = ops::detail::gated_delta_rule_reference(per_value_head(qr), per_value_head(kr),
                                                           vr, gr, br, hr, scale, ref_offsets);
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
  std::printf("%s, slice %d:\n", name_of(c).c_str(), c.scan_slice);
  check("o", o, ref.o, tol_out);
  check("final_state", final_state, ref.final_state, tol_out);
  check("dq", per_qk_head(dq), grads[0], tol_qkv);
  check("dk", per_qk_head(dk), grads[1], tol_qkv);
  check("dv", dv, grads[2], tol_qkv);
  if (c.dtype != at::kBFloat16 || c.cuda_core) {  // fp32 workspaces
    check("dg", dg, grads[3], tol_gb);
  } else {
    // The last token's dg holds gamma_C <S, dS> over the whole K x V state, S entering the last
    // chunk and dS leaving it, read from their bf16 copies (the saved states, as fla saves them):
    // its error is a sum of K V rounding errors, each a relative error of at most u = 2^-9 per
    // copy, of standard deviation u / sqrt(3), so about sqrt(2 / 3) u ||S * dS|| for the two
    // copies; at K x V = 32,768 with a unit-normal dS (T = 70, one head) it can outweigh every
    // other token's dg together. That token is held to six of those standard deviations plus the
    // error fla's tolerance allows the whole tensor, the others to fla's tolerance.
    // Tokens as rows of [B * T, H]; each sequence's last token, and its last chunk's index in the
    // workspaces for each head (sequence by sequence, then head by head).
    const at::Tensor dg_rows = dg.reshape({B * T, H}), want_rows = grads[3].reshape({B * T, H});
    std::vector<int64_t> last_tokens, last_chunks;
    for (int64_t i = 0; i < N; ++i) {
      last_tokens.push_back(seqs.tokens[i + 1] - 1);
      const int64_t n_chunks = seqs.chunks[i + 1] - seqs.chunks[i];
      for (int64_t h = 0; h < H; ++h) {
        last_chunks.push_back(seqs.chunks[i] * H + h * n_chunks + n_chunks - 1);
      }
    }
    const at::Tensor is_last =
        at::zeros({B * T}, at::kBool).index_fill_(0, at::tensor(last_tokens, at::kLong), true);
    check("dg", dg_rows.index({~is_last}), want_rows.index({~is_last}), tol_gb);
    const at::Tensor s_last =
        chunk_states.index_select(0, at::tensor(last_chunks, at::kLong)).to(at::kDouble);
    const at::Tensor bound =
        6 * std::sqrt(2.0 / 3.0) * std::ldexp(1.0, -9) *
        (s_last.reshape({N, H, Dk, Dv}) * grad_final.to(at::kDouble)).norm(2, {-2, -1});  // [N, H]
    const at::Tensor last = at::tensor(last_tokens, at::kLong);
    const at::Tensor last_error =
        (dg_rows.index_select(0, last).to(at::kDouble) - want_rows.index_select(0, last)).abs();
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

// Packed sequences (cu_seqlens): lengths that end mid-chunk, on a chunk boundary, a one-token
// sequence and a sleep window, each from its own initial state, against the recurrence run on
// each sequence alone; both kernel families, the Jet-Nemotron head dims, a forced scan slice, and
// the forward without backward workspaces.
TEST(GdnChunkEmulated, PackedSequencesMatchTheRecurrenceOfEachSequence) {
  const std::vector<int64_t> lengths{24, 130, 1, 64, 70};
  const int64_t total = 289;
  Case tensor_core{1, total, 2, 64, at::kBFloat16, true};
  tensor_core.packed = lengths;
  Case cuda_core{1, total, 2, 64, at::kFloat, true};
  cuda_core.packed = lengths;
  Case jet{1, 94, 1, 96, at::kBFloat16, true};
  jet.dim_v = 256;
  jet.packed = {70, 24};
  Case slice{1, 95, 1, 128, at::kBFloat16, false};
  slice.packed = {24, 70, 1};
  slice.scan_slice = 32;
  Case inference = tensor_core;
  inference.backward = false;
  for (const Case& c : {tensor_core, cuda_core, jet, slice, inference}) {
    expect_close_to_recurrence(c);
  }
}

// The same kernels on one packed batch and on each sequence alone give the same bits: a packed
// chunk computes exactly what that sequence's chunk computes alone.
TEST(GdnChunkEmulated, PackedSequencesEqualEachSequenceAloneBitForBit) {
  for (const bool cuda_core : {false, true}) {
    Case c{1, 95, 2, 64, cuda_core ? at::kFloat : at::kBFloat16, true};
    c.packed = {70, 1, 24};
    SCOPED_TRACE(name_of(c));
    const SequenceOffsets seqs = sequences_of(c);
    const Inputs in = make_inputs(c, seqs.sequences());
    const Outputs packed = run_kernels(c, seqs, in);
    for (int64_t i = 0; i < seqs.sequences(); ++i) {
      const int64_t t0 = seqs.tokens[i], t1 = seqs.tokens[i + 1];
      Case alone = c;
      alone.packed.clear();
      alone.seq_len = t1 - t0;
      using at::indexing::Slice;
      auto rows = [&](const at::Tensor& x) {
        return x.index({Slice(), Slice(t0, t1)}).contiguous();
      };
      auto state = [&](const at::Tensor& x) { return x.index({Slice(i, i + 1)}).contiguous(); };
      const Inputs one{rows(in.q),    rows(in.k),   rows(in.v),      rows(in.g),
                       rows(in.beta), state(in.h0), rows(in.grad_o), state(in.grad_final)};
      const Outputs got = run_kernels(alone, sequences_of(alone), one);
      SCOPED_TRACE(::testing::Message() << "sequence " << i);
      EXPECT_TRUE(at::equal(rows(packed.o), got.o)) << "o";
      EXPECT_TRUE(at::equal(state(packed.final_state), got.final_state)) << "final_state";
      EXPECT_TRUE(at::equal(rows(packed.dq), got.dq)) << "dq";
      EXPECT_TRUE(at::equal(rows(packed.dk), got.dk)) << "dk";
      EXPECT_TRUE(at::equal(rows(packed.dv), got.dv)) << "dv";
      EXPECT_TRUE(at::equal(rows(packed.dg), got.dg)) << "dg";
      EXPECT_TRUE(at::equal(rows(packed.dbeta), got.dbeta)) << "dbeta";
      EXPECT_TRUE(at::equal(state(packed.dh0), got.dh0)) << "dh0";
    }
  }
}

// Grouped value heads (heads_qk < heads, as Qwen3-Next's layers): value head h reads q, k head
// h / (H / heads_qk); the kernels write dq, dk per value head and their sum over each group is
// the gradient of the shared head. Both families, packed too, and the Jet-Nemotron head dims.
TEST(GdnChunkEmulated, GroupedValueHeadsMatchTheRecurrenceOnRepeatedQk) {
  Case tensor_core{2, 70, 4, 64, at::kBFloat16, true};
  tensor_core.heads_qk = 2;
  Case cuda_core{1, 70, 4, 64, at::kFloat, true};
  cuda_core.heads_qk = 1;
  Case packed{1, 95, 2, 96, at::kBFloat16, true};
  packed.dim_v = 256;
  packed.heads_qk = 1;
  packed.packed = {24, 70, 1};
  for (const Case& c : {tensor_core, cuda_core, packed}) expect_close_to_recurrence(c);
}

// The separate output kernel (a state-only scan, then O for every chunk at once) bit for bit
// against the fused scan's o (the same MMAs on the same bf16 operands; the fused scan is held to
// the recurrence above), and without backward workspaces against the recurrence. The backward
// reads the same workspaces either way, so its gradients are the same bits too.
TEST(GdnChunkEmulated, SeparateOutputKernelGivesTheFusedScansBits) {
  Case two_chunks{2, 130, 2, 64, at::kBFloat16, true};
  Case jet_packed{1, 94, 1, 96, at::kBFloat16, true};
  jet_packed.dim_v = 256;
  jet_packed.packed = {70, 24};
  Case grouped{1, 70, 2, 128, at::kBFloat16, false};
  grouped.heads_qk = 1;
  grouped.scan_slice = 32;
  Case inference{1, 70, 2, 64, at::kBFloat16, true};
  inference.backward = false;
  for (Case c : {two_chunks, jet_packed, grouped, inference}) {
    c.forward_output = K::GdnForwardOutput::kSeparate;
    if (!c.backward) expect_close_to_recurrence(c);  // the others: the fused scan's bits below
    SCOPED_TRACE(name_of(c));
    const SequenceOffsets seqs = sequences_of(c);
    const Inputs in = make_inputs(c, seqs.sequences());
    const Outputs separate = run_kernels(c, seqs, in);
    c.forward_output = K::GdnForwardOutput::kInScan;
    const Outputs fused = run_kernels(c, seqs, in);
    EXPECT_TRUE(at::equal(separate.o, fused.o)) << "o";
    EXPECT_TRUE(at::equal(separate.final_state, fused.final_state)) << "final_state";
    if (!c.backward) continue;
    EXPECT_TRUE(at::equal(separate.dq, fused.dq)) << "dq";
    EXPECT_TRUE(at::equal(separate.dk, fused.dk)) << "dk";
    EXPECT_TRUE(at::equal(separate.dv, fused.dv)) << "dv";
    EXPECT_TRUE(at::equal(separate.dg, fused.dg)) << "dg";
    EXPECT_TRUE(at::equal(separate.dbeta, fused.dbeta)) << "dbeta";
  }
}

}  // namespace hypnos
