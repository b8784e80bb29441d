// Muon: Nesterov momentum + Newton-Schulz orthogonalisation, the reference's Muon.step in ATen.
#include "hypnos/train/muon.h"

#include <torch/optim/serialize.h>
#include <torch/serialize/archive.h>

namespace hypnos::train {

at::Tensor newton_schulz(const at::Tensor& grad, int64_t steps) {
  if (grad.dim() != 2 && grad.dim() != 3) {
    throw std::invalid_argument(
        "newton_schulz: grad must be a matrix [M, N] or a batch of them [G, M, N], got shape " +
        c10::str(grad.sizes()));
  }
  if (steps < 0) {
    throw std::invalid_argument("newton_schulz: steps must be >= 0, got " + std::to_string(steps));
  }
  const auto compute = grad.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const bool single = grad.dim() == 2;
  at::Tensor x = single ? grad.to(compute).unsqueeze(0) : grad.to(compute);
  x = x / (at::linalg_vector_norm(x, 2, /*dim=*/{-2, -1}, /*keepdim=*/true) + 1e-7);
  const bool tall = x.size(1) > x.size(2);
  if (tall) x = x.transpose(1, 2);
  for (int64_t i = 0; i < steps; ++i) {
    const at::Tensor a = at::bmm(x, x.transpose(1, 2));  // [G, min, min]
    const at::Tensor b = at::baddbmm(a, a, a, /*beta=*/kNewtonSchulzB, /*alpha=*/kNewtonSchulzC);
    x = at::baddbmm(x, b, x, /*beta=*/kNewtonSchulzA, /*alpha=*/1.0);
  }
  if (tall) x = x.transpose(1, 2);
  if (single) x = x.squeeze(0);
  return x.to(grad.scalar_type()).contiguous();
}

void MuonOptions::serialize(torch::serialize::OutputArchive& archive) const {
  archive.write("lr", c10::IValue(lr()));
  archive.write("momentum", c10::IValue(momentum()));
  archive.write("nesterov", c10::IValue(nesterov()));
  archive.write("ns_steps", c10::IValue(ns_steps()));
  archive.write("weight_decay", c10::IValue(weight_decay()));
}

void MuonOptions::serialize(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  archive.read("lr", v);
  lr(v.toDouble());
  archive.read("momentum", v);
  momentum(v.toDouble());
  archive.read("nesterov", v);
  nesterov(v.toBool());
  archive.read("ns_steps", v);
  ns_steps(v.toInt());
  archive.read("weight_decay", v);
  weight_decay(v.toDouble());
}

void MuonParamState::serialize(torch::serialize::OutputArchive& archive) const {
  archive.write("momentum_buffer", momentum_buffer(), /*is_buffer=*/true);
}

void MuonParamState::serialize(torch::serialize::InputArchive& archive) {
  at::Tensor buffer;
  archive.read("momentum_buffer", buffer, /*is_buffer=*/true);
  momentum_buffer(buffer);
}

Muon::Muon(std::vector<at::Tensor> params, MuonOptions defaults)
    : torch::optim::Optimizer(std::move(params), std::make_unique<MuonOptions>(defaults)) {
  const auto& group = param_groups_.front().params();
  for (size_t i = 0; i < group.size(); ++i) {
    if (group[i].dim() != 2) {
      throw std::invalid_argument("Muon: parameter " + std::to_string(i) +
                                  " must be a 2-D matrix, got shape " + c10::str(group[i].sizes()));
    }
  }
  if (!(defaults.lr() >= 0.0)) {
    throw std::invalid_argument("Muon: lr must be >= 0, got " + c10::str(defaults.lr()));
  }
  if (!(defaults.momentum() >= 0.0 && defaults.momentum() < 1.0)) {
    throw std::invalid_argument("Muon: momentum must be in [0, 1), got " +
                                c10::str(defaults.momentum()));
  }
  if (defaults.ns_steps() < 0) {
    throw std::invalid_argument("Muon: ns_steps must be >= 0, got " +
                                std::to_string(defaults.ns_steps()));
  }
}

at::Tensor Muon::step(LossClosure closure) {
  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(/*enabled=*/true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const MuonOptions&>(group.options());
    // Parameters of one shape share one batched Newton-Schulz and a few fused (foreach) kernels:
    // a model has a handful of shapes and dozens of matrices, and on a GPU the per-matrix launches
    // would cost more than the arithmetic.
    std::map<std::vector<int64_t>, std::vector<at::Tensor>> by_shape;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto fresh = std::make_unique<MuonParamState>();
        fresh->momentum_buffer(at::zeros_like(p, at::MemoryFormat::Contiguous));
        slot = std::move(fresh);
      }
      by_shape[p.sizes().vec()].push_back(p);
    }
    for (auto& [shape, params] : by_shape) {
      std::vector<at::Tensor> grads, buffers;
      for (const auto& p : params) {
        grads.push_back(p.grad());
        buffers.push_back(
            static_cast<MuonParamState&>(*state_[p.unsafeGetTensorImpl()]).momentum_buffer());
      }
      at::_foreach_mul_(buffers, options.momentum());
      at::_foreach_add_(buffers, grads);
      const std::vector<at::Tensor> updates =
          options.nesterov() ? at::_foreach_add(grads, buffers, options.momentum()) : buffers;
      const at::Tensor ortho = newton_schulz(at::stack(updates), options.ns_steps());
      const double scale = 0.2 * std::sqrt(static_cast<double>(std::max(shape[0], shape[1])));
      if (options.weight_decay() != 0.0) {
        at::_foreach_mul_(params, 1.0 - options.lr() * options.weight_decay());
      }
      at::_foreach_add_(params, ortho.unbind(0), -options.lr() * scale);
    }
  }
  return loss;
}

void Muon::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<MuonParamState, MuonOptions>(archive, *this);
}

void Muon::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<MuonParamState, MuonOptions>(archive, *this);
}

}  // namespace hypnos::train
