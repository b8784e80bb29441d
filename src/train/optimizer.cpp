// Muon + AdamW behind one step / zero_grad / lr multiplier / archive, with the reference's split,
// and the fp32 masters of 16-bit parameters.
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

// A master that holds no data yet: an fp32 leaf with the parameter's shape over one element (zero
// strides). Muon and AdamW key their state by this tensor, so it is filled in place (set_) when
// the parameter is first updated, and emptied in place when another rank takes it over.
void make_placeholder(at::Tensor& master, at::IntArrayRef sizes) {
  at::NoGradGuard no_grad;
  const at::Tensor one = at::zeros({1}, master.options());
  master.set_(one.storage(), /*storage_offset=*/0, sizes, std::vector<int64_t>(sizes.size(), 0));
}

at::Tensor placeholder_master(const at::Tensor& param) {
  at::Tensor master = at::empty({0}, at::TensorOptions().dtype(at::kFloat).device(param.device()));
  make_placeholder(master, param.sizes());
  master.set_requires_grad(true);  // a leaf like the weights Muon and AdamW otherwise update
  return master;
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
  for (const auto& p : parameters()) {
    const bool sixteen_bit = at::isReducedFloatingType(p.scalar_type());
    // Autograd converts each gradient of the weight to fp32 before it sums them (over the uses in
    // one backward and over the micro-batches): the bits a 16-bit sum would drop stay.
    if (sixteen_bit) p.set_grad_dtype(at::kFloat);
    with_master_.push_back(sixteen_bit);
    master_filled_.push_back(!sixteen_bit);
    masters_.push_back(sixteen_bit ? placeholder_master(p) : p);
    n_with_master_ += sixteen_bit ? 1 : 0;
  }
  const auto muon_end = masters_.begin() + static_cast<std::ptrdiff_t>(muon_params_.size());
  if (!muon_params_.empty()) {
    muon_ = std::make_unique<Muon>(std::vector<at::Tensor>(masters_.begin(), muon_end),
                                   muon_options(options, 1.0));
  }
  if (!adamw_params_.empty()) {
    adamw_ = std::make_unique<torch::optim::AdamW>(
        std::vector<at::Tensor>(muon_end, masters_.end()), adamw_options(options, 1.0));
  }
}

Optimizer::Optimizer(Optimizer&&) noexcept = default;
Optimizer& Optimizer::operator=(Optimizer&&) noexcept = default;
Optimizer::~Optimizer() = default;

void Optimizer::step() {
  const auto params = parameters();
  // Both optimizers skip a parameter without a gradient: the unowned ones lend theirs for the
  // step and get them back (the same tensors, which a replayed CUDA graph accumulates into).
  std::vector<std::pair<at::Tensor, at::Tensor>> lent;
  // A 16-bit parameter's master starts from the parameter at its first update here (exact: every
  // bf16 value is an fp32 value), borrows the parameter's fp32 gradient for the step, and the
  // updated master comes back rounded.
  std::vector<size_t> updated;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].grad().defined()) continue;
    if (!with_master_[i]) {
      if (owns(i)) continue;
      lent.emplace_back(params[i], params[i].grad());
      params[i].mutable_grad() = at::Tensor();
    } else if (owns(i)) {
      if (!master_filled_[i]) set_master(i, params[i].detach().to(at::kFloat));
      masters_[i].mutable_grad() = params[i].grad();
      updated.push_back(i);
    }
  }
  if (muon_) muon_->step();
  if (adamw_) fused_adamw_step(*adamw_);
  if (!updated.empty()) {
    at::NoGradGuard no_grad;
    for (size_t i : updated) {
      params[i].copy_(masters_[i]);  // round to nearest even
      masters_[i].mutable_grad() = at::Tensor();
    }
  }
  for (auto& [param, grad] : lent) param.mutable_grad() = grad;
}

bool Optimizer::has_inner_state(size_t i) const {
  auto* key = masters_.at(i).unsafeGetTensorImpl();
  if (i < muon_params_.size()) return muon_->state().count(key) > 0;
  return adamw_->state().count(key) > 0;
}

void Optimizer::set_master(size_t i, const at::Tensor& value) {
  const auto params = parameters();
  const at::Tensor& p = params.at(i);
  TORCH_CHECK(with_master_[i], "Optimizer: parameter ", i, " is fp32 and has no master");
  TORCH_CHECK(value.sizes() == p.sizes() && value.scalar_type() == at::kFloat,
              "Optimizer: the master of parameter ", i, " must be float32 of shape ", p.sizes(),
              ", got ", value.scalar_type(), " of shape ", value.sizes());
  at::NoGradGuard no_grad;
  masters_[i].set_(value.to(p.device()).contiguous());
  master_filled_[i] = true;
}

void Optimizer::release_master(size_t i) {
  if (!with_master_[i]) return;
  make_placeholder(masters_[i], masters_[i].sizes());
  master_filled_[i] = false;
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
  std::vector<at::Tensor> out;
  if (i < muon_params_.size()) {
    const auto it = muon_->state().find(masters_[i].unsafeGetTensorImpl());
    if (it == muon_->state().end()) return {};
    out = {static_cast<MuonParamState&>(*it->second).momentum_buffer()};
  } else {
    const auto it = adamw_->state().find(masters_.at(i).unsafeGetTensorImpl());
    if (it == adamw_->state().end()) return {};
    const auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out = {s.exp_avg(), s.exp_avg_sq(), at::scalar_tensor(s.step(), at::kLong)};
  }
  if (with_master_[i]) out.insert(out.begin(), masters_[i]);
  return out;
}

std::vector<at::Tensor> Optimizer::empty_state_like(size_t i) const {
  if (with_master_.at(i)) {                // the master, then fp32 state
    const at::Tensor p = parameters()[i];  // a handle: parameters() is a temporary
    const auto fp32 = p.options().dtype(at::kFloat);
    if (i < muon_params_.size()) return {at::empty(p.sizes(), fp32), at::empty(p.sizes(), fp32)};
    return {at::empty(p.sizes(), fp32), at::empty(p.sizes(), fp32), at::empty(p.sizes(), fp32),
            at::scalar_tensor(0, at::kLong)};
  }
  if (i < muon_params_.size())
    return {at::empty_like(muon_params_[i], at::MemoryFormat::Contiguous)};
  const at::Tensor& p = adamw_params_.at(i - muon_params_.size());
  return {at::empty_like(p, at::MemoryFormat::Preserve),
          at::empty_like(p, at::MemoryFormat::Preserve), at::scalar_tensor(0, at::kLong)};
}

void Optimizer::set_state_of(size_t i, const std::vector<at::Tensor>& state) {
  const size_t first = with_master_.at(i) ? 1 : 0;  // the master comes first
  if (i < muon_params_.size()) {
    TORCH_CHECK(state.size() == first + 1, "Optimizer::set_state_of: Muon parameter ", i, " takes ",
                first + 1, " state tensors, got ", state.size());
    if (first == 1) set_master(i, state[0]);
    auto fresh = std::make_unique<MuonParamState>();
    fresh->momentum_buffer(state[first]);
    muon_->state()[masters_[i].unsafeGetTensorImpl()] = std::move(fresh);
    return;
  }
  TORCH_CHECK(state.size() == first + 3, "Optimizer::set_state_of: AdamW parameter ", i, " takes ",
              first + 3, " state tensors, got ", state.size());
  if (first == 1) set_master(i, state[0]);
  auto fresh = std::make_unique<torch::optim::AdamWParamState>();
  fresh->exp_avg(state[first]);
  fresh->exp_avg_sq(state[first + 1]);
  fresh->step(state[first + 2].item<int64_t>());
  adamw_->state()[masters_[i].unsafeGetTensorImpl()] = std::move(fresh);
}

void Optimizer::drop_unowned_state() {
  if (owned_.empty()) return;
  for (size_t i = 0; i < owned_.size(); ++i) {
    if (owned_[i]) continue;
    if (i < muon_params_.size()) {
      muon_->state().erase(masters_[i].unsafeGetTensorImpl());
    } else {
      adamw_->state().erase(masters_[i].unsafeGetTensorImpl());
    }
    release_master(i);
  }
}

void Optimizer::zero_grad(bool set_to_none) {
  if (set_to_none) {
    if (muon_) muon_->zero_grad(/*set_to_none=*/true);
    if (adamw_) adamw_->zero_grad(/*set_to_none=*/true);
    if (has_masters()) {  // Muon and AdamW hold the masters: the 16-bit parameters' own gradients
      for (const auto& p : parameters()) p.mutable_grad() = at::Tensor();
    }
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
  if (has_masters()) {  // by parameter index, those created so far (with the state)
    archive.write("n_with_master", c10::IValue(static_cast<int64_t>(n_with_master_)));
    torch::serialize::OutputArchive sub(archive.compilation_unit());
    for (size_t i = 0; i < masters_.size(); ++i) {
      if (with_master_[i] && master_filled_[i]) {
        sub.write(std::to_string(i), masters_[i].detach(), /*is_buffer=*/true);
      }
    }
    archive.write("masters", sub);
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
  // fp32 parameters write no masters (their archives are as before this existed).
  const int64_t saved_with_master =
      archive.try_read("n_with_master", value) ? value.toInt() : int64_t{0};
  if (saved_with_master != static_cast<int64_t>(n_with_master_)) {
    throw std::invalid_argument(
        "Optimizer::load: the archive holds the state of " + std::to_string(saved_with_master) +
        " parameters with fp32 masters (16-bit parameters), this optimizer has " +
        std::to_string(n_with_master_) + ": was it saved with another train.param_dtype?");
  }
  std::map<size_t, at::Tensor> masters;  // read and checked before anything is installed
  if (has_masters()) {
    torch::serialize::InputArchive sub;
    archive.read("masters", sub);
    const auto params = parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      at::Tensor master;
      if (!with_master_[i] || !sub.try_read(std::to_string(i), master, /*is_buffer=*/true)) {
        continue;
      }
      if (master.scalar_type() != at::kFloat) {
        throw std::invalid_argument(
            "Optimizer::load: the master of parameter " + std::to_string(i) + " is " +
            std::string(c10::toString(master.scalar_type())) + ", expected Float");
      }
      check_and_place(master, params[i], "the master", i);
      masters.emplace(i, master);
    }
  }
  archive.read("lr_multiplier", value);
  const double multiplier = value.toDouble();
  if (muon_) {
    torch::serialize::InputArchive sub;
    archive.read("muon", sub);
    muon_->load(sub);
    const auto& params = muon_params_;
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = muon_->state().find(masters_[i].unsafeGetTensorImpl());
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
      auto it = adamw_->state().find(masters_[muon_params_.size() + i].unsafeGetTensorImpl());
      if (it == adamw_->state().end()) continue;
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      check_and_place(s.exp_avg(), params[i], "AdamW exp_avg", i);
      check_and_place(s.exp_avg_sq(), params[i], "AdamW exp_avg_sq", i);
    }
  }
  for (size_t i = 0; i < masters_.size(); ++i) {
    if (!with_master_[i]) continue;
    const auto found = masters.find(i);
    if (found != masters.end()) {
      set_master(i, found->second);
    } else if (has_inner_state(i)) {  // the state would update a master that lost its fp32 bits
      throw std::invalid_argument("Optimizer::load: parameter " + std::to_string(i) +
                                  " has optimizer state but no fp32 master in the archive");
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
