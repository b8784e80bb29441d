// Muon (Keller Jordan): momentum, then the update replaced by the nearest semi-orthogonal matrix
// (its polar factor) via a quintic Newton-Schulz iteration; port of Muon in
// bench/reference/sleep_reference.py, with the update RMS matched to AdamW's (Moonlight).
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace hypnos::train {

/// Coefficients (a, b, c) of the quintic X <- a X + (b A + c A^2) X, A = X X^T. They trade
/// exactness for speed: after 5 steps every singular value s of the normalised input with
/// s >= 2e-3 lands in [0.68, 1.21] rather than on 1, and every s < 1e-3 stays under 0.47
/// (amplified at most 3.4445^5 ~ 488x); measured on a dense grid of s in float64.
inline constexpr double kNewtonSchulzA = 3.4445;
inline constexpr double kNewtonSchulzB = -4.7750;
inline constexpr double kNewtonSchulzC = 2.0315;

/// Approximate polar factor U V^T of a matrix G = U S V^T: G is scaled to unit Frobenius norm
/// (plus 1e-7, so a zero matrix stays zero), then `steps` quintic iterations run on the wide
/// orientation (a tall G is transposed, so A = X X^T is the smaller Gram matrix).
/// Computes in float32 (float64 stays float64); returns G's dtype. G: [M, N], or [G, M, N] for a
/// batch of matrices of one shape (each one orthogonalised on its own), steps >= 0.
at::Tensor newton_schulz(const at::Tensor& grad, int64_t steps = 5);

/// Defaults follow the reference (Muon(lr=2e-3, momentum=0.95, wd=0)).
struct MuonOptions : public torch::optim::OptimizerCloneableOptions<MuonOptions> {
  MuonOptions(double lr = 2e-3) : lr_(lr) {}  // NOLINT: implicit like torch's AdamWOptions
  TORCH_ARG(double, lr) = 2e-3;
  TORCH_ARG(double, momentum) = 0.95;
  /// Nesterov: the update direction is grad + momentum * buffer instead of the buffer.
  TORCH_ARG(bool, nesterov) = true;
  TORCH_ARG(int64_t, ns_steps) = 5;
  /// Decoupled: p <- p * (1 - lr * weight_decay) before the update.
  TORCH_ARG(double, weight_decay) = 0.0;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

struct MuonParamState : public torch::optim::OptimizerCloneableParamState<MuonParamState> {
  /// Momentum buffer, same shape and dtype as the parameter.
  TORCH_ARG(at::Tensor, momentum_buffer);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

/// Per 2-D parameter W [M, N] with gradient g (parameters of one shape are updated together):
///   buf <- momentum * buf + g;  u = nesterov ? g + momentum * buf : buf
///   W <- W * (1 - lr * wd) - lr * 0.2 * sqrt(max(M, N)) * newton_schulz(u, ns_steps)
/// The 0.2 * sqrt(max(M, N)) factor gives the update the RMS (about 0.2) of a typical AdamW
/// update, so Muon's lr is on AdamW's scale (Moonlight, arXiv:2502.16982).
class Muon : public torch::optim::Optimizer {
 public:
  /// Every parameter must be 2-D (std::invalid_argument naming the index and shape otherwise).
  explicit Muon(std::vector<at::Tensor> params, MuonOptions defaults = {});

  at::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

}  // namespace hypnos::train
