// The gated delta rule in its WY/UT chunked form (docs/delta_rule.md sections 2 and 3, ported from
// reference/gdn_chunk_reference.py) with the hand-derived backward. Everything parallel over chunks
// runs as one batched op over all chunks; only the state scan (forward) and the state-gradient scan
// (backward) loop, over chunks, two small batched GEMMs per step.
#include "ops/gated_delta_rule_backends.h"

namespace hypnos::ops::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Chunked tensors are chunk-major, [NC, B*H, C, ...], so that each scan step reads contiguous
// slices and batched matmuls see one flat batch dimension.

// x: [B, T, H, ...] -> [NC, B*H, C, ...], T zero-padded up to NC * C.
at::Tensor to_chunks(const at::Tensor& x, int64_t C) {
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2);
  const int64_t NC = (T + C - 1) / C;
  at::Tensor y = x;
  if (NC * C != T) {
    std::vector<int64_t> pad_shape = x.sizes().vec();
    pad_shape[1] = NC * C - T;
    y = at::cat({x, at::zeros(pad_shape, x.options())}, /*dim=*/1);
  }
  std::vector<int64_t> split = {B, NC, C, H};  // [B, NC, C, H, ...]
  std::vector<int64_t> flat = {NC, B * H, C};  // [NC, B*H, C, ...]
  std::vector<int64_t> perm = {1, 0, 3, 2};
  for (int64_t d = 3; d < x.dim(); ++d) {
    split.push_back(x.size(d));
    flat.push_back(x.size(d));
    perm.push_back(d + 1);
  }
  return y.reshape(split).permute(perm).reshape(flat);
}

// y: [NC, B*H, C, ...] -> [B, T, H, ...], the padding dropped.
at::Tensor from_chunks(const at::Tensor& y, int64_t B, int64_t H, int64_t T) {
  const int64_t NC = y.size(0), C = y.size(2);
  std::vector<int64_t> split = {NC, B, H, C};  // [NC, B, H, C, ...]
  std::vector<int64_t> flat = {B, NC * C, H};  // [B, NC*C, H, ...]
  std::vector<int64_t> perm = {1, 0, 3, 2};
  for (int64_t d = 3; d < y.dim(); ++d) {
    split.push_back(y.size(d));
    flat.push_back(y.size(d));
    perm.push_back(d + 1);
  }
  return y.reshape(split).permute(perm).reshape(flat).narrow(1, 0, T).contiguous();
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
  // q, k: [B, T, H, K]; v: [B, T, H, V]; g, beta: [B, T, H]; h0: [B, H, K, V] (always defined).
  // Returns {o: [B, T, H, V], final state: [B, H, K, V]}.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& g, const at::Tensor& beta,
                               const at::Tensor& h0, double scale, int64_t chunk) {
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
    const int64_t C = chunk, NC = (T + C - 1) / C, BH = B * H;

    const at::Tensor qc = to_chunks(q, C), kc = to_chunks(k, C);  // [NC, BH, C, K]
    const at::Tensor vc = to_chunks(v, C);                        // [NC, BH, C, V]
    const at::Tensor bc = to_chunks(beta, C);                     // [NC, BH, C]
    const at::Tensor G = to_chunks(g, C).cumsum(-1);              // [NC, BH, C]

    // Per-chunk WY/UT preparation, all chunks at once.
    const at::Tensor R = decay_ratios(G);  // [NC, BH, C, C]
    const at::Tensor gam = G.exp();        // [NC, BH, C]
    const at::Tensor kk = at::matmul(kc, tr(kc));
    const at::Tensor L = wy_l(kk, bc, R);
    // A = (I + L)^-1; unitriangular reads only the strict lower part, so L stands for I + L.
    const at::Tensor A = at::linalg_solve_triangular(L, at::eye(C, L.options()).expand_as(L),
                                                     /*upper=*/false, /*left=*/true,
                                                     /*unitriangular=*/true);
    const at::Tensor W = at::matmul(A, (bc * gam).unsqueeze(-1) * kc);   // [NC, BH, C, K]
    const at::Tensor Ut = at::matmul(A, bc.unsqueeze(-1) * vc);          // [NC, BH, C, V]
    const at::Tensor decay = (G.narrow(-1, C - 1, 1) - G).exp();         // exp(G_C - G_i)
    const at::Tensor gam_last = gam.narrow(-1, C - 1, 1).unsqueeze(-1);  // [NC, BH, 1, 1]
    const at::Tensor kd_t = tr(decay.unsqueeze(-1) * kc).contiguous();   // [NC, BH, K, C]

    // The sequential scan. states[n] is the state entering chunk n; states[NC] the final one.
    at::Tensor states = at::empty({NC + 1, BH, K, V}, q.options());
    at::Tensor U = at::empty({NC, BH, C, V}, q.options());
    states[0].copy_(h0.reshape({BH, K, V}));
    for (int64_t n = 0; n < NC; ++n) {
      at::Tensor U_n = U[n], S_next = states[n + 1];
      const at::Tensor S_n = states[n];
      at::baddbmm_out(U_n, Ut[n], W[n], S_n, /*beta=*/1, /*alpha=*/-1);  // U = Ut - W S
      at::mul_out(S_next, S_n, gam_last[n]);
      S_next.baddbmm_(kd_t[n], U_n);  // + K^T diag(decay) U
    }

    // O = scale diag(gam) Q S + P U, P = scale (Q K^T) * R, all chunks at once.
    const at::Tensor S_in = states.narrow(0, 0, NC);
    const at::Tensor P = at::matmul(qc, tr(kc)).mul_(R).mul_(scale);
    const at::Tensor O = (gam * scale).unsqueeze(-1) * at::matmul(qc, S_in) + at::matmul(P, U);

    ctx->save_for_backward({qc, kc, vc, bc, G, R, A, W, states, U, kk, P});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["B"] = B;
    ctx->saved_data["T"] = T;
    ctx->saved_data["H"] = H;
    return {from_chunks(O, B, H, T), states[NC].reshape({B, H, K, V}).clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &qc = saved[0], &kc = saved[1], &vc = saved[2], &bc = saved[3];
    const at::Tensor &G = saved[4], &R = saved[5], &A = saved[6], &W = saved[7];
    const at::Tensor &states = saved[8], &U = saved[9], &kk = saved[10], &P = saved[11];
    const double scale = ctx->saved_data["scale"].toDouble();
    const int64_t B = ctx->saved_data["B"].toInt(), T = ctx->saved_data["T"].toInt();
    const int64_t H = ctx->saved_data["H"].toInt();
    const int64_t NC = qc.size(0), BH = qc.size(1), C = qc.size(2), K = qc.size(3);
    const int64_t V = vc.size(3);

    // Unused outputs arrive undefined: their gradient is zero.
    const at::Tensor d_o = grad_outputs[0].defined()
                               ? to_chunks(grad_outputs[0], C)
                               : at::zeros({NC, BH, C, V}, qc.options());  // [NC, BH, C, V]
    at::Tensor grad_states = at::empty({NC + 1, BH, K, V}, qc.options());
    if (grad_outputs[1].defined()) {
      grad_states[NC].copy_(grad_outputs[1].reshape({BH, K, V}));
    } else {
      grad_states[NC].zero_();
    }

    const at::Tensor gam = G.exp();
    const at::Tensor decay = (G.narrow(-1, C - 1, 1) - G).exp();
    const at::Tensor gam_last = gam.narrow(-1, C - 1, 1).unsqueeze(-1);  // [NC, BH, 1, 1]
    const at::Tensor L = wy_l(kk, bc, R);
    const at::Tensor Z = (bc * gam).unsqueeze(-1) * kc;         // W = A Z
    const at::Tensor Y = bc.unsqueeze(-1) * vc;                 // Ut = A Y
    const at::Tensor q_gam = (gam * scale).unsqueeze(-1) * qc;  // scale diag(gam) Q

    // Reverse scan over chunks; grad_states[n + 1] is the gradient of the state leaving chunk n.
    //   dU      = P^T dO + diag(decay) K dS
    //   dS_prev = scale (diag(gam) Q)^T dO + gam_C dS - W^T dU
    const at::Tensor dU_local = at::matmul(tr(P), d_o);      // [NC, BH, C, V]
    const at::Tensor dS_local = at::matmul(tr(q_gam), d_o);  // [NC, BH, K, V]
    const at::Tensor kd = (decay.unsqueeze(-1) * kc).contiguous();
    const at::Tensor w_t = tr(W).contiguous();
    at::Tensor dU = at::empty({NC, BH, C, V}, qc.options());
    for (int64_t n = NC - 1; n >= 0; --n) {
      at::Tensor dU_n = dU[n], dS_n = grad_states[n];
      const at::Tensor dS_next = grad_states[n + 1];
      at::baddbmm_out(dU_n, dU_local[n], kd[n], dS_next);
      at::mul_out(dS_n, dS_next, gam_last[n]);
      dS_n.add_(dS_local[n]).baddbmm_(w_t[n], dU_n, /*beta=*/1, /*alpha=*/-1);
    }

    // Everything else is parallel over chunks.
    const at::Tensor S_in = states.narrow(0, 0, NC);      // state entering each chunk
    const at::Tensor dS = grad_states.narrow(0, 1, NC);   // gradient of the state leaving it
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

    return {from_chunks(dq, B, H, T),
            from_chunks(dk, B, H, T),
            from_chunks(dv, B, H, T),
            from_chunks(dg, B, H, T),
            from_chunks(db, B, H, T),
            grad_states[0].reshape({B, H, K, V}).clone(),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

GatedDeltaRuleOutput gated_delta_rule_chunked(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, const at::Tensor& g,
                                              const at::Tensor& beta,
                                              const at::Tensor& initial_state, double scale,
                                              int64_t chunk) {
  if (chunk < 1) {
    throw std::invalid_argument("gated_delta_rule_chunked: chunk is " + std::to_string(chunk) +
                                ", expected >= 1");
  }
  const at::Tensor h0 = initial_state.defined()
                            ? initial_state
                            : at::zeros({q.size(0), q.size(2), q.size(3), v.size(3)}, q.options());
  // A sequence shorter than a chunk is one chunk of its own length: padding it would only add
  // C^2 work on zeros (T = 24 windows would pay 7x for their C x C products at C = 64).
  const int64_t C = std::max<int64_t>(1, std::min(chunk, q.size(1)));
  variable_list out = GatedDeltaRuleChunkedFunction::apply(q, k, v, g, beta, h0, scale, C);
  return {out[0], out[1]};
}

}  // namespace hypnos::ops::detail
