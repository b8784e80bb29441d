// The gated delta rule in its WY/UT chunked form (docs/delta_rule.md sections 2 and 3, ported from
// reference/gdn_chunk_reference.py) with the hand-derived backward. Everything parallel over chunks
// runs as one batched op over all chunks; only the state scan (forward) and the state-gradient scan
// (backward) loop, over chunks, two small batched GEMMs per step. Packed variable-length sequences
// (cu_seqlens) run in the same one pass: each sequence has its own chunks, and the scans restart at
// each sequence (ChunkPlan below).
#include "ops/gated_delta_rule_backends.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace hypnos::ops::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// How tokens sit in chunks (docs/delta_rule.md section 3, "Packed sequences"). Chunk tensors are
// [NCt, H, C, ...]: NCt chunks of C token slots, one row per head. Every sequence is cut into its
// own chunks (a chunk never straddles two sequences; a sequence's last chunk is zero-padded: g = 0,
// beta = 0, q = k = v = 0 there, which is exact), and the chunks are ordered step-major: step j
// holds the j-th chunk of every sequence that has one, the sequences ranked by their number of
// chunks, longest first (stable). So the chunks of step j are the contiguous rows [base_j, base_j +
// m_j), and the m_j sequences still running at step j are the first m_j ranks: the scan keeps one
// running state per sequence, [N*H, K, V] in rank order, and step j updates its first m_j * H rows
// in place. A sequence that has ended is never touched again, so after the last step the running
// state holds every sequence's final state. Everything parallel over chunks sees all chunks of all
// sequences as one batch.
//
// Without cu_seqlens the B rows of the batch are B sequences of T tokens: the same order is then
// [NC, B, H, C, ...] = the chunk-major [NC, B*H, C, ...] of a plain reshape, and no gather is
// needed.
struct ChunkPlan {
  int64_t B = 0, T = 0, H = 0, C = 0;
  int64_t sequences = 0;                       // N: B, or the packed sequences
  int64_t chunks = 0;                          // NCt over all sequences
  std::vector<int64_t> step_base, step_count;  // step j: chunk rows [base_j, base_j + m_j)
  int64_t steps() const { return static_cast<int64_t>(step_base.size()); }
  bool packed = false;
  // Only when packed (all int64 on the inputs' device):
  at::Tensor rank_to_sequence;  // [N]: the sequence at each rank
  at::Tensor sequence_to_rank;  // [N]
  at::Tensor token_of_slot;     // [NCt * C]: the packed token in each slot, T for padding
  at::Tensor slot_of_token;     // [T]
};

// cu_seqlens empty: B sequences of T tokens. Otherwise B = 1 and sequence i is tokens
// [cu_seqlens[i], cu_seqlens[i + 1]) (validated by the entry point).
ChunkPlan make_plan(int64_t B, int64_t T, int64_t H, int64_t C,
                    const std::vector<int64_t>& cu_seqlens, const at::Device& device) {
  ChunkPlan plan;
  plan.B = B;
  plan.T = T;
  plan.H = H;
  plan.C = C;
  if (cu_seqlens.empty()) {
    const int64_t NC = (T + C - 1) / C;
    plan.sequences = B;
    plan.chunks = NC * B;
    for (int64_t j = 0; j < NC; ++j) {
      plan.step_base.push_back(j * B);
      plan.step_count.push_back(B);
    }
    return plan;
  }
  const int64_t N = static_cast<int64_t>(cu_seqlens.size()) - 1;
  plan.packed = true;
  plan.sequences = N;
  std::vector<int64_t> n_chunks(N), rank_to_sequence(N), sequence_to_rank(N);
  for (int64_t i = 0; i < N; ++i) n_chunks[i] = (cu_seqlens[i + 1] - cu_seqlens[i] + C - 1) / C;
  std::iota(rank_to_sequence.begin(), rank_to_sequence.end(), 0);
  std::stable_sort(rank_to_sequence.begin(), rank_to_sequence.end(),
                   [&](int64_t a, int64_t b) { return n_chunks[a] > n_chunks[b]; });
  for (int64_t r = 0; r < N; ++r) sequence_to_rank[rank_to_sequence[r]] = r;
  const int64_t steps = n_chunks[rank_to_sequence[0]];
  for (int64_t j = 0; j < steps; ++j) {
    int64_t m = 0;
    while (m < N && n_chunks[rank_to_sequence[m]] > j) ++m;
    plan.step_base.push_back(plan.chunks);
    plan.step_count.push_back(m);
    plan.chunks += m;
  }
  std::vector<int64_t> token_of_slot(plan.chunks * C, T), slot_of_token(T);
  for (int64_t j = 0; j < steps; ++j) {
    for (int64_t r = 0; r < plan.step_count[j]; ++r) {
      const int64_t seq = rank_to_sequence[r], row = plan.step_base[j] + r;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t t = cu_seqlens[seq] + j * C + c;
        if (t >= cu_seqlens[seq + 1]) break;
        token_of_slot[row * C + c] = t;
        slot_of_token[t] = row * C + c;
      }
    }
  }
  const auto on_device = [&](const std::vector<int64_t>& x) {
    return at::tensor(x, at::TensorOptions().dtype(at::kLong)).to(device);
  };
  plan.rank_to_sequence = on_device(rank_to_sequence);
  plan.sequence_to_rank = on_device(sequence_to_rank);
  plan.token_of_slot = on_device(token_of_slot);
  plan.slot_of_token = on_device(slot_of_token);
  return plan;
}

// x: [B, T, H, ...] -> [NCt, H, C, ...] in the plan's chunk order, padded slots zero.
at::Tensor to_chunks(const ChunkPlan& plan, const at::Tensor& x) {
  const int64_t B = plan.B, T = plan.T, H = plan.H, C = plan.C;
  std::vector<int64_t> trailing(x.sizes().begin() + 3, x.sizes().end());
  auto with_trailing = [&](std::vector<int64_t> lead) {
    lead.insert(lead.end(), trailing.begin(), trailing.end());
    return lead;
  };
  if (plan.packed) {
    // One zero row at index T serves every padded slot.
    const at::Tensor tokens =
        at::cat({x.select(0, 0), at::zeros(with_trailing({1, H}), x.options())});
    return tokens.index_select(0, plan.token_of_slot)
        .view(with_trailing({plan.chunks, C, H}))
        .transpose(1, 2)
        .contiguous();
  }
  const int64_t NC = plan.chunks / B;
  at::Tensor y = x;
  if (NC * C != T) {
    std::vector<int64_t> pad_shape = x.sizes().vec();
    pad_shape[1] = NC * C - T;
    y = at::cat({x, at::zeros(pad_shape, x.options())}, /*dim=*/1);
  }
  std::vector<int64_t> perm = {1, 0, 3, 2};  // [B, NC, C, H, ...] -> [NC, B, H, C, ...]
  for (int64_t d = 3; d < x.dim(); ++d) perm.push_back(d + 1);
  return y.reshape(with_trailing({B, NC, C, H}))
      .permute(perm)
      .reshape(with_trailing({NC * B, H, C}));
}

// y: [NCt, H, C, ...] -> [B, T, H, ...], the padding dropped.
at::Tensor from_chunks(const ChunkPlan& plan, const at::Tensor& y) {
  const int64_t B = plan.B, T = plan.T, H = plan.H, C = plan.C;
  std::vector<int64_t> trailing(y.sizes().begin() + 3, y.sizes().end());
  auto with_trailing = [&](std::vector<int64_t> lead) {
    lead.insert(lead.end(), trailing.begin(), trailing.end());
    return lead;
  };
  if (plan.packed) {
    return y.transpose(1, 2)
        .reshape(with_trailing({plan.chunks * C, H}))
        .index_select(0, plan.slot_of_token)
        .unsqueeze(0);
  }
  const int64_t NC = plan.chunks / B;
  std::vector<int64_t> perm = {1, 0, 3, 2};  // [NC, B, H, C, ...] -> [B, NC, C, H, ...]
  for (int64_t d = 3; d < y.dim(); ++d) perm.push_back(d + 1);
  return y.reshape(with_trailing({NC, B, H, C}))
      .permute(perm)
      .reshape(with_trailing({B, NC * C, H}))
      .narrow(1, 0, T)
      .contiguous();
}

// states: [N, H, K, V] per sequence -> a fresh running state [N*H, K, V] in rank order.
at::Tensor to_ranks(const ChunkPlan& plan, const at::Tensor& states) {
  const at::Tensor ranked =
      plan.packed ? states.index_select(0, plan.rank_to_sequence) : states.clone();
  return ranked.reshape({-1, states.size(2), states.size(3)});
}

// running: [N*H, K, V] in rank order -> [N, H, K, V] per sequence.
at::Tensor from_ranks(const ChunkPlan& plan, const at::Tensor& running) {
  const at::Tensor states =
      running.view({plan.sequences, plan.H, running.size(1), running.size(2)});
  return plan.packed ? states.index_select(0, plan.sequence_to_rank) : states;
}

// Rows [base_j, base_j + m_j) of a chunk tensor [NCt, H, ...] as one batch [m_j * H, ...] (a view).
at::Tensor step_rows(const ChunkPlan& plan, const at::Tensor& x, int64_t j) {
  return x.narrow(0, plan.step_base[j], plan.step_count[j]).flatten(0, 1);
}

// Transpose of the last two dimensions (batched matrices).
at::Tensor tr(const at::Tensor& x) {
  return x.transpose(-1, -2);
}

// R_ij = exp(G_i - G_j) for i >= j, else 0. Masking before the exp keeps every exponent <= 0 for
// g <= 0, so no exp(-G_j) is ever formed alone (it overflows for strongly decaying chunks).
// G: [NC, BH, C] -> R: [NC, BH, C, C]
at::Tensor decay_ratios(const at::Tensor& G) {
  const int64_t C = G.size(-1);
  const at::Tensor upper = at::ones({C, C}, G.options().dtype(at::kBool)).triu(/*diagonal=*/1);
  return (G.unsqueeze(-1) - G.unsqueeze(-2))
      .masked_fill(upper, -std::numeric_limits<double>::infinity())
      .exp();
}

// L = strict_lower(diag(b) (K K^T) * R): [NC, BH, C, C]
at::Tensor wy_l(const at::Tensor& kk, const at::Tensor& b, const at::Tensor& R) {
  return (b.unsqueeze(-1) * kk * R).tril(/*diagonal=*/-1);
}

class GatedDeltaRuleChunkedFunction
    : public torch::autograd::Function<GatedDeltaRuleChunkedFunction> {
 public:
  // q, k: [B, T, H, K]; v: [B, T, H, V]; g, beta: [B, T, H]; h0: [N, H, K, V] (always defined),
  // N = B, or with cu_seqlens (B = 1) the number of packed sequences.
  // Returns {o: [B, T, H, V], final states: [N, H, K, V]}.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& g, const at::Tensor& beta,
                               const at::Tensor& h0, double scale, int64_t chunk,
                               const std::vector<int64_t>& cu_seqlens) {
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
    const int64_t C = chunk;
    const ChunkPlan plan = make_plan(B, T, H, C, cu_seqlens, q.device());
    const int64_t NC = plan.chunks;

    const at::Tensor qc = to_chunks(plan, q), kc = to_chunks(plan, k);  // [NC, H, C, K]
    const at::Tensor vc = to_chunks(plan, v);                           // [NC, H, C, V]
    const at::Tensor bc = to_chunks(plan, beta);                        // [NC, H, C]
    const at::Tensor G = to_chunks(plan, g).cumsum(-1);                 // [NC, H, C]

    // Per-chunk WY/UT preparation, all chunks of all sequences at once.
    const at::Tensor R = decay_ratios(G);  // [NC, H, C, C]
    const at::Tensor gam = G.exp();        // [NC, H, C]
    const at::Tensor kk = at::matmul(kc, tr(kc));
    const at::Tensor L = wy_l(kk, bc, R);
    // A = (I + L)^-1; unitriangular reads only the strict lower part, so L stands for I + L.
    const at::Tensor A = at::linalg_solve_triangular(L, at::eye(C, L.options()).expand_as(L),
                                                     /*upper=*/false, /*left=*/true,
                                                     /*unitriangular=*/true);
    const at::Tensor W = at::matmul(A, (bc * gam).unsqueeze(-1) * kc);   // [NC, H, C, K]
    const at::Tensor Ut = at::matmul(A, bc.unsqueeze(-1) * vc);          // [NC, H, C, V]
    const at::Tensor decay = (G.narrow(-1, C - 1, 1) - G).exp();         // exp(G_C - G_i)
    const at::Tensor gam_last = gam.narrow(-1, C - 1, 1).unsqueeze(-1);  // [NC, H, 1, 1]
    const at::Tensor kd_t = tr(decay.unsqueeze(-1) * kc).contiguous();   // [NC, H, K, C]

    // The sequential scan, step by step over all sequences still running (ChunkPlan). states[n] is
    // the state entering chunk n; `running` each sequence's latest state, in rank order, which
    // ends as the final states.
    at::Tensor states = at::empty({NC, H, K, V}, q.options());
    at::Tensor U = at::empty({NC, H, C, V}, q.options());
    at::Tensor running = to_ranks(plan, h0);  // [N*H, K, V]
    for (int64_t j = 0; j < plan.steps(); ++j) {
      at::Tensor S_n = step_rows(plan, states, j), U_n = step_rows(plan, U, j);
      at::Tensor S_running = running.narrow(0, 0, S_n.size(0));  // the m_j sequences running
      S_n.copy_(S_running);
      at::baddbmm_out(U_n, step_rows(plan, Ut, j), step_rows(plan, W, j), S_n, /*beta=*/1,
                      /*alpha=*/-1);  // U = Ut - W S
      at::mul_out(S_running, S_n, step_rows(plan, gam_last, j));
      S_running.baddbmm_(step_rows(plan, kd_t, j), U_n);  // + K^T diag(decay) U
    }

    // O = scale diag(gam) Q S + P U, P = scale (Q K^T) * R, all chunks at once.
    const at::Tensor P = at::matmul(qc, tr(kc)).mul_(R).mul_(scale);
    const at::Tensor O = (gam * scale).unsqueeze(-1) * at::matmul(qc, states) + at::matmul(P, U);

    ctx->save_for_backward({qc, kc, vc, bc, G, R, A, W, states, U, kk, P});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["B"] = B;
    ctx->saved_data["T"] = T;
    ctx->saved_data["cu_seqlens"] = cu_seqlens;
    return {from_chunks(plan, O), from_ranks(plan, running)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &qc = saved[0], &kc = saved[1], &vc = saved[2], &bc = saved[3];
    const at::Tensor &G = saved[4], &R = saved[5], &A = saved[6], &W = saved[7];
    const at::Tensor &states = saved[8], &U = saved[9], &kk = saved[10], &P = saved[11];
    const double scale = ctx->saved_data["scale"].toDouble();
    const int64_t B = ctx->saved_data["B"].toInt(), T = ctx->saved_data["T"].toInt();
    const std::vector<int64_t> cu_seqlens = ctx->saved_data["cu_seqlens"].toIntVector();
    const int64_t NC = qc.size(0), H = qc.size(1), C = qc.size(2), K = qc.size(3);
    const int64_t V = vc.size(3);
    const ChunkPlan plan = make_plan(B, T, H, C, cu_seqlens, qc.device());

    // Unused outputs arrive undefined: their gradient is zero.
    const at::Tensor d_o = grad_outputs[0].defined()
                               ? to_chunks(plan, grad_outputs[0])
                               : at::zeros({NC, H, C, V}, qc.options());  // [NC, H, C, V]
    // Each sequence's gradient of its latest state, in rank order: first the final state's, then,
    // stepping back, the gradient of the state entering each chunk; it ends as d initial_state.
    at::Tensor d_running = grad_outputs[1].defined()
                               ? to_ranks(plan, grad_outputs[1])
                               : at::zeros({plan.sequences * H, K, V}, qc.options());

    const at::Tensor gam = G.exp();
    const at::Tensor decay = (G.narrow(-1, C - 1, 1) - G).exp();
    const at::Tensor gam_last = gam.narrow(-1, C - 1, 1).unsqueeze(-1);  // [NC, H, 1, 1]
    const at::Tensor L = wy_l(kk, bc, R);
    const at::Tensor Z = (bc * gam).unsqueeze(-1) * kc;         // W = A Z
    const at::Tensor Y = bc.unsqueeze(-1) * vc;                 // Ut = A Y
    const at::Tensor q_gam = (gam * scale).unsqueeze(-1) * qc;  // scale diag(gam) Q

    // Reverse scan; grad_states[n] is the gradient of the state leaving chunk n.
    //   dU      = P^T dO + diag(decay) K dS
    //   dS_prev = scale (diag(gam) Q)^T dO + gam_C dS - W^T dU
    const at::Tensor dU_local = at::matmul(tr(P), d_o);      // [NC, H, C, V]
    const at::Tensor dS_local = at::matmul(tr(q_gam), d_o);  // [NC, H, K, V]
    const at::Tensor kd = (decay.unsqueeze(-1) * kc).contiguous();
    const at::Tensor w_t = tr(W).contiguous();
    at::Tensor grad_states = at::empty({NC, H, K, V}, qc.options());
    at::Tensor dU = at::empty({NC, H, C, V}, qc.options());
    for (int64_t j = plan.steps() - 1; j >= 0; --j) {
      at::Tensor dS_n = step_rows(plan, grad_states, j), dU_n = step_rows(plan, dU, j);
      at::Tensor dS_running = d_running.narrow(0, 0, dS_n.size(0));
      dS_n.copy_(dS_running);
      at::baddbmm_out(dU_n, step_rows(plan, dU_local, j), step_rows(plan, kd, j), dS_n);
      at::mul_out(dS_running, dS_n, step_rows(plan, gam_last, j));
      dS_running.add_(step_rows(plan, dS_local, j))
          .baddbmm_(step_rows(plan, w_t, j), dU_n, /*beta=*/1, /*alpha=*/-1);
    }

    // Everything else is parallel over chunks.
    const at::Tensor& S_in = states;                      // state entering each chunk
    const at::Tensor& dS = grad_states;                   // gradient of the state leaving it
    const at::Tensor dP = at::matmul(d_o, tr(U)).tril();  // [NC, BH, C, C]
    const at::Tensor dPR = dP * R;
    const at::Tensor dq_inter = (gam * scale).unsqueeze(-1) * at::matmul(d_o, tr(S_in));
    const at::Tensor dq = dq_inter + at::matmul(dPR, kc).mul_(scale);
    const at::Tensor UdS = at::matmul(U, tr(dS));  // [NC, BH, C, K]
    at::Tensor dk = at::matmul(tr(dPR), qc).mul_(scale) + decay.unsqueeze(-1) * UdS;

    // Through U = Ut - W S, W = A Z, Ut = A Y, A = (I + L)^-1.
    const at::Tensor dW = -at::matmul(dU, tr(S_in));
    const at::Tensor A_t = tr(A);
    const at::Tensor dZ = at::matmul(A_t, dW);
    const at::Tensor dY = at::matmul(A_t, dU);
    const at::Tensor dA = at::matmul(dW, tr(Z)) + at::matmul(dU, tr(Y));
    const at::Tensor dL = at::matmul(at::matmul(A_t, dA), A_t).neg_().tril(/*diagonal=*/-1);
    const at::Tensor F = dL * R;  // gradient of K K^T before the row scale by beta
    const at::Tensor b_col = bc.unsqueeze(-1);
    dk += (bc * gam).unsqueeze(-1) * dZ + b_col * at::matmul(F, kc) + at::matmul(tr(F), b_col * kc);
    const at::Tensor dv = b_col * dY;
    const at::Tensor db =
        (dZ * gam.unsqueeze(-1) * kc).sum(-1) + (dY * vc).sum(-1) + (F * kk).sum(-1);

    // Gradient of the within-chunk cumulative log-decay G, term by term as in docs/delta_rule.md 3.
    at::Tensor dG = (qc * dq_inter).sum(-1);  // (a) = rowsum(dO * scale diag(gam) Q S)
    const at::Tensor PdP = P * dP;
    dG += PdP.sum(-1) - PdP.sum(-2);                  // (b)
    const at::Tensor e = decay * (kc * UdS).sum(-1);  // e_i = decay_i k_i^T dS u_i
    dG -= e;                                          // (d)
    dG.narrow(-1, C - 1, 1)
        .add_((gam.narrow(-1, C - 1, 1).squeeze(-1) * (S_in * dS).sum({-1, -2}) + e.sum(-1))
                  .unsqueeze(-1));  // (c) + (d) on G_C
    dG += (dZ * Z).sum(-1);         // (e)
    const at::Tensor LdL = L * dL;
    dG += LdL.sum(-1) - LdL.sum(-2);                        // (f)
    const at::Tensor dg = dG.flip(-1).cumsum(-1).flip(-1);  // G = cumsum(g)

    return {from_chunks(plan, dq), from_chunks(plan, dk), from_chunks(plan, dv),
            from_chunks(plan, dg), from_chunks(plan, db), from_ranks(plan, d_running),
            at::Tensor(),          at::Tensor(),          at::Tensor()};
  }
};

}  // namespace

GatedDeltaRuleOutput gated_delta_rule_chunked(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, const at::Tensor& g,
                                              const at::Tensor& beta,
                                              const at::Tensor& initial_state, double scale,
                                              int64_t chunk,
                                              const std::vector<int64_t>& cu_seqlens) {
  if (chunk < 1) {
    throw std::invalid_argument("gated_delta_rule_chunked: chunk is " + std::to_string(chunk) +
                                ", expected >= 1");
  }
  const int64_t sequences =
      cu_seqlens.empty() ? q.size(0) : static_cast<int64_t>(cu_seqlens.size()) - 1;
  int64_t longest = q.size(1);
  if (!cu_seqlens.empty()) {
    longest = 0;
    for (size_t i = 1; i < cu_seqlens.size(); ++i) {
      longest = std::max(longest, cu_seqlens[i] - cu_seqlens[i - 1]);
    }
  }
  const at::Tensor h0 = initial_state.defined()
                            ? initial_state
                            : at::zeros({sequences, q.size(2), q.size(3), v.size(3)}, q.options());
  // Sequences all shorter than a chunk take chunks of the longest one's length: padding them would
  // only add C^2 work on zeros (T = 24 windows would pay 7x for their C x C products at C = 64).
  const int64_t C = std::max<int64_t>(1, std::min(chunk, longest));
  variable_list out =
      GatedDeltaRuleChunkedFunction::apply(q, k, v, g, beta, h0, scale, C, cu_seqlens);
  return {out[0], out[1]};
}

}  // namespace hypnos::ops::detail
