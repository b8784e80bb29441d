// Muon + AdamW behind one step / zero_grad / lr multiplier / archive, with the reference's split.
#include "hypnos/train/optimizer.h"

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/archive.h>

#include "hypnos/train/grad.h"
#include "hypnos/train/muon.h"

namespace hypnos::train {
namespace {

std::vector<at::Tensor> tensors_of(const NamedParameters& named) {
  std::vector<at::Tensor> out;
  out.reserve(named.size());
  for (const auto& [name, tensor] : named) out.push_back(tensor);
  return out;
}

torch::optim::AdamWOptions adamw_options(const OptimizerOptions& o, double multiplier) {
  return torch::optim::AdamWOptions(o.adamw_lr * multiplier)
      .betas({o.beta1, o.beta2})
      .eps(o.eps)
      .weight_decay(o.weight_decay);
}

MuonOptions muon_options(const OptimizerOptions& o, double multiplier) {
  return MuonOptions(o.muon_lr * multiplier)
      .momentum(o.momentum)
      .nesterov(true)
      .ns_steps(o.ns_steps)
      .weight_decay(o.weight_decay);
}

// A state tensor must match its parameter's shape (a checkpoint of another model would otherwise
// fail steps later, far from the cause) and live on its device (the archive may load to the CPU).
void check_and_place(at::Tensor& state, const at::Tensor& param, const char* what, size_t index) {
  if (!state.defined()) return;
  if (state.sizes() != param.sizes()) {
    throw std::invalid_argument(std::string("Optimizer::load: ") + what + " of parameter " +
                                std::to_string(index) + " has shape " + c10::str(state.sizes()) +
                                ", the parameter has " + c10::str(param.sizes()));
  }
  if (state.device() != param.device()) state = state.to(param.device());
}

// torch::optim::AdamW's update (decoupled decay, bias corrections) through ATen's fused
// multi-tensor kernel: one launch for every parameter of a group instead of about ten per
// parameter. The state stays torch::optim::AdamW's (exp_avg, exp_avg_sq, an integer step), so
// archives are unchanged.
void fused_adamw_step(torch::optim::AdamW& adamw) {
  at::NoGradGuard no_grad;
  for (auto& group : adamw.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    TORCH_CHECK(!o.amsgrad(), "fused_adamw_step: amsgrad is not used by hypnos");
    struct Lists {
      std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    };
    std::map<std::pair<int64_t, at::ScalarType>, Lists> by_step;  // normally one entry
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = adamw.state()[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*slot);
      state.step(state.step() + 1);
      auto& lists = by_step[{state.step(), p.scalar_type()}];
      lists.params.push_back(p);
      lists.grads.push_back(p.grad());
      lists.exp_avgs.push_back(state.exp_avg());
      lists.exp_avg_sqs.push_back(state.exp_avg_sq());
    }
    for (auto& [key, lists] : by_step) {
      const auto step =
          at::full({}, static_cast<double>(key.first),
                   at::TensorOptions().dtype(at::kFloat).device(lists.params[0].device()));
      const std::vector<at::Tensor> steps(lists.params.size(), step);  // read, not written
      at::_fused_adamw_(lists.params, lists.grads, lists.exp_avgs, lists.exp_avg_sqs,
                        /*max_exp_avg_sqs=*/{}, steps, o.lr(), std::get<0>(o.betas()),
                        std::get<1>(o.betas()), o.weight_decay(), o.eps(), /*amsgrad=*/false,
                        /*maximize=*/false);
    }
  }
}

}  // namespace

ParameterSplit split_parameters(const torch::nn::Module& module) {
  ParameterSplit split;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    const at::Tensor& p = item.value();
    if (!p.requires_grad()) continue;
    // The JetBlock kernel generator is a pair of hidden matrices under either naming
    // (kernel_down / kernel_up, or Jet-Nemotron's dynamic_conv1d.kernel_generator.w1 / w2).
    const bool generator = name.find("kernel_generator") != std::string::npos;
    const bool hidden_matrix = p.dim() == 2 && name.find("emb") == std::string::npos &&
                               name.find("head") == std::string::npos &&
                               (generator || name.find("conv") == std::string::npos);
    (hidden_matrix ? split.muon : split.adamw).emplace_back(name, p);
  }
  return split;
}

Optimizer::Optimizer(const ParameterSplit& split, const OptimizerOptions& options)
    : options_(options) {
  if (!(options.muon_lr >= 0.0)) {
    throw std::invalid_argument("Optimizer: optimizer.muon_lr must be >= 0, got " +
                                c10::str(options.muon_lr));
  }
  if (!(options.adamw_lr >= 0.0)) {
    throw std::invalid_argument("Optimizer: optimizer.adamw_lr must be >= 0, got " +
                                c10::str(options.adamw_lr));
  }
  if (!(options.grad_clip >= 0.0)) {
    throw std::invalid_argument("Optimizer: optimizer.grad_clip must be >= 0 (0 = off), got " +
                                c10::str(options.grad_clip));
  }
  for (const auto& [name, p] : split.muon) {
    if (p.dim() != 2) {
      throw std::invalid_argument("Optimizer: Muon parameter '" + name +
                                  "' must be 2-D, got shape " + c10::str(p.sizes()));
    }
  }
  muon_params_ = tensors_of(split.muon);
  adamw_params_ = tensors_of(split.adamw);
  if (!muon_params_.empty()) {
    muon_ = std::make_unique<Muon>(muon_params_, muon_options(options, 1.0));
  }
  if (!adamw_params_.empty()) {
    adamw_ = std::make_unique<torch::optim::AdamW>(adamw_params_, adamw_options(options, 1.0));
  }
}

Optimizer::Optimizer(Optimizer&&) noexcept = default;
Optimizer& Optimizer::operator=(Optimizer&&) noexcept = default;
Optimizer::~Optimizer() = default;

void Optimizer::step() {
  // Both optimizers skip a parameter without a gradient: the unowned ones lend theirs for the
  // step and get them back (the same tensors, which a replayed CUDA graph accumulates into).
  std::vector<std::pair<at::Tensor, at::Tensor>> lent;
  if (!owned_.empty()) {
    const auto params = parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      if (owned_[i] || !params[i].grad().defined()) continue;
      lent.emplace_back(params[i], params[i].grad());
      params[i].mutable_grad() = at::Tensor();
    }
  }
  if (muon_) muon_->step();
  if (adamw_) fused_adamw_step(*adamw_);
  for (auto& [param, grad] : lent) param.mutable_grad() = grad;
}

void Optimizer::set_owned(std::vector<bool> owned) {
  if (!owned.empty() && owned.size() != muon_params_.size() + adamw_params_.size()) {
    throw std::invalid_argument(
        "Optimizer::set_owned: " + std::to_string(owned.size()) + " flags for " +
        std::to_string(muon_params_.size() + adamw_params_.size()) + " parameters");
  }
  owned_ = std::move(owned);
}

std::vector<at::Tensor> Optimizer::state_of(size_t i) const {
  if (i < muon_params_.size()) {
    const auto it = muon_->state().find(muon_params_[i].unsafeGetTensorImpl());
    if (it == muon_->state().end()) return {};
    return {static_cast<MuonParamState&>(*it->second).momentum_buffer()};
  }
  const at::Tensor& p = adamw_params_.at(i - muon_params_.size());
  const auto it = adamw_->state().find(p.unsafeGetTensorImpl());
  if (it == adamw_->state().end()) return {};
  const auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
  return {s.exp_avg(), s.exp_avg_sq(), at::scalar_tensor(s.step(), at::kLong)};
}

std::vector<at::Tensor> Optimizer::empty_state_like(size_t i) const {
  if (i < muon_params_.size())
    return {at::empty_like(muon_params_[i], at::MemoryFormat::Contiguous)};
  const at::Tensor& p = adamw_params_.at(i - muon_params_.size());
  return {at::empty_like(p, at::MemoryFormat::Preserve),
          at::empty_like(p, at::MemoryFormat::Preserve), at::scalar_tensor(0, at::kLong)};
}

void Optimizer::set_state_of(size_t i, const std::vector<at::Tensor>& state) {
  if (i < muon_params_.size()) {
    TORCH_CHECK(state.size() == 1, "Optimizer::set_state_of: Muon parameter ", i,
                " takes 1 state tensor, got ", state.size());
    auto fresh = std::make_unique<MuonParamState>();
    fresh->momentum_buffer(state[0]);
    muon_->state()[muon_params_[i].unsafeGetTensorImpl()] = std::move(fresh);
    return;
  }
  const at::Tensor& p = adamw_params_.at(i - muon_params_.size());
  TORCH_CHECK(state.size() == 3, "Optimizer::set_state_of: AdamW parameter ", i,
              " takes 3 state tensors, got ", state.size());
  auto fresh = std::make_unique<torch::optim::AdamWParamState>();
  fresh->exp_avg(state[0]);
  fresh->exp_avg_sq(state[1]);
  fresh->step(state[2].item<int64_t>());
  adamw_->state()[p.unsafeGetTensorImpl()] = std::move(fresh);
}

void Optimizer::drop_unowned_state() {
  if (owned_.empty()) return;
  for (size_t i = 0; i < owned_.size(); ++i) {
    if (owned_[i]) continue;
    if (i < muon_params_.size()) {
      muon_->state().erase(muon_params_[i].unsafeGetTensorImpl());
    } else {
      adamw_->state().erase(adamw_params_[i - muon_params_.size()].unsafeGetTensorImpl());
    }
  }
}

void Optimizer::zero_grad(bool set_to_none) {
  if (set_to_none) {
    if (muon_) muon_->zero_grad(/*set_to_none=*/true);
    if (adamw_) adamw_->zero_grad(/*set_to_none=*/true);
    return;
  }
  std::vector<at::Tensor> grads = defined_grads(parameters());
  at::NoGradGuard no_grad;
  if (!grads.empty()) at::_foreach_zero_(grads);
}

double Optimizer::clip_gradients() {
  return clip_grad_norm(parameters(), options_.grad_clip);
}

void Optimizer::set_lr_multiplier(double multiplier) {
  if (!(multiplier >= 0.0) || !std::isfinite(multiplier)) {
    throw std::invalid_argument(
        "Optimizer::set_lr_multiplier: multiplier must be finite and >= 0, got " +
        c10::str(multiplier));
  }
  lr_multiplier_ = multiplier;
  if (muon_) {
    for (auto& group : muon_->param_groups()) group.options().set_lr(muon_lr());
  }
  if (adamw_) {
    for (auto& group : adamw_->param_groups()) group.options().set_lr(adamw_lr());
  }
}

double Optimizer::muon_lr() const {
  return options_.muon_lr * lr_multiplier_;
}
double Optimizer::adamw_lr() const {
  return options_.adamw_lr * lr_multiplier_;
}

std::vector<at::Tensor> Optimizer::parameters() const {
  std::vector<at::Tensor> out = muon_params_;
  out.insert(out.end(), adamw_params_.begin(), adamw_params_.end());
  return out;
}

void Optimizer::save(torch::serialize::OutputArchive& archive) const {
  archive.write("lr_multiplier", c10::IValue(lr_multiplier_));
  archive.write("n_muon", c10::IValue(static_cast<int64_t>(muon_params_.size())));
  archive.write("n_adamw", c10::IValue(static_cast<int64_t>(adamw_params_.size())));
  if (muon_) {
    torch::serialize::OutputArchive sub(archive.compilation_unit());
    muon_->save(sub);
    archive.write("muon", sub);
  }
  if (adamw_) {
    torch::serialize::OutputArchive sub(archive.compilation_unit());
    adamw_->save(sub);
    archive.write("adamw", sub);
  }
}

void Optimizer::load(torch::serialize::InputArchive& archive) {
  c10::IValue value;
  archive.read("n_muon", value);
  const int64_t n_muon = value.toInt();
  archive.read("n_adamw", value);
  const int64_t n_adamw = value.toInt();
  const auto have_muon = static_cast<int64_t>(muon_params_.size());
  const auto have_adamw = static_cast<int64_t>(adamw_params_.size());
  if (n_muon != have_muon || n_adamw != have_adamw) {
    throw std::invalid_argument("Optimizer::load: the archive holds " + std::to_string(n_muon) +
                                " Muon and " + std::to_string(n_adamw) +
                                " AdamW parameters, this optimizer has " +
                                std::to_string(have_muon) + " and " + std::to_string(have_adamw));
  }
  archive.read("lr_multiplier", value);
  const double multiplier = value.toDouble();
  if (muon_) {
    torch::serialize::InputArchive sub;
    archive.read("muon", sub);
    muon_->load(sub);
    const auto& params = muon_params_;
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = muon_->state().find(params[i].unsafeGetTensorImpl());
      if (it == muon_->state().end()) continue;
      auto& s = static_cast<MuonParamState&>(*it->second);
      check_and_place(s.momentum_buffer(), params[i], "Muon momentum_buffer", i);
    }
  }
  if (adamw_) {
    torch::serialize::InputArchive sub;
    archive.read("adamw", sub);
    adamw_->load(sub);
    const auto& params = adamw_params_;
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = adamw_->state().find(params[i].unsafeGetTensorImpl());
      if (it == adamw_->state().end()) continue;
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      check_and_place(s.exp_avg(), params[i], "AdamW exp_avg", i);
      check_and_place(s.exp_avg_sq(), params[i], "AdamW exp_avg_sq", i);
    }
  }
  // The archive also carried each group's hyperparameters; the configured ones win, so the object
  // never disagrees with options().
  if (muon_) {
    for (auto& group : muon_->param_groups()) {
      static_cast<MuonOptions&>(group.options()) = muon_options(options_, 1.0);
    }
  }
  if (adamw_) {
    for (auto& group : adamw_->param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()) = adamw_options(options_, 1.0);
    }
  }
  set_lr_multiplier(multiplier);
}

}  // namespace hypnos::train
