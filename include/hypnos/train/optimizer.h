// The training optimizer of the paper: Muon for the hidden matrices, AdamW for everything else,
// one object with one lr multiplier (from the schedule) and one archive, so a resume is bitwise.
// Parameters stored in bf16 (train.param_dtype) get fp32 gradients and fp32 master weights here.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hypnos/config/fields.h"

// Only references and owning pointers below: the LibTorch optimizer headers stay in the .cpp.
namespace torch::nn {
class Module;
}  // namespace torch::nn
namespace torch::optim {
class AdamW;
}  // namespace torch::optim
namespace torch::serialize {
class OutputArchive;
class InputArchive;
}  // namespace torch::serialize

namespace hypnos::train {

class Muon;

struct OptimizerOptions {
  /// Muon lr for the hidden matrices (paper: 2e-3 for Rule 110 and Depo, 1e-3 for GSM-Infinite).
  /// Default: 2e-3.
  double muon_lr = 2e-3;
  /// AdamW lr for the other parameters (paper). Default: 5e-5.
  double adamw_lr = 5e-5;
  /// Default: 0.9.
  double beta1 = 0.9;
  /// Default: 0.999.
  double beta2 = 0.999;
  /// AdamW's denominator epsilon. Default: 1e-8.
  double eps = 1e-8;
  /// Decoupled weight decay of both groups (the reference uses none). Default: 0.
  double weight_decay = 0.0;
  /// Muon's Nesterov momentum. Default: 0.95.
  double momentum = 0.95;
  /// Newton-Schulz iterations per Muon update. Default: 5.
  int64_t ns_steps = 5;
  /// Maximum global gradient norm; 0 disables clipping. Default: 1.0.
  double grad_clip = 1.0;

  template <class V>
  void visit(V& v) {
    v.field("muon_lr", muon_lr, "Muon lr (hidden 2-D matrices)", config::Range{0, 10});
    v.field("adamw_lr", adamw_lr, "AdamW lr (embeddings, head, norms, 1-D, conv)",
            config::Range{0, 10});
    v.field("beta1", beta1, "AdamW first-moment decay", config::Range{0, 0.999999});
    v.field("beta2", beta2, "AdamW second-moment decay", config::Range{0, 0.999999});
    v.field("eps", eps, "AdamW epsilon", config::Range{0, 1});
    v.field("weight_decay", weight_decay, "decoupled weight decay (both groups)",
            config::Range{0, 10});
    v.field("momentum", momentum, "Muon Nesterov momentum", config::Range{0, 0.999999});
    v.field("ns_steps", ns_steps, "Newton-Schulz iterations per Muon update",
            config::Range{0, 100});
    v.field("grad_clip", grad_clip, "max global gradient norm, 0 = off", config::Range{0, 1e12});
  }
};

using NamedParameters = std::vector<std::pair<std::string, at::Tensor>>;

/// The two groups, each in the module's parameter order (the order is part of the checkpoint).
struct ParameterSplit {
  NamedParameters muon;   ///< hidden 2-D matrices
  NamedParameters adamw;  ///< everything else that requires grad
};

/// The reference's rule (muon_groups in sleep_reference.py) plus one safety net: a parameter goes
/// to Muon when it is exactly 2-D and its full dotted name contains none of "emb", "head" (the
/// reference's two) and "conv" (a short convolution stored as a [C, K] matrix is not a hidden
/// linear map; on the reference model no 2-D name contains it, so the split is the reference's).
/// Everything else goes to AdamW: embeddings, the output head, norm scales, biases, gates and
/// decays (0-D or 1-D), conv weights (3-D). Parameters with requires_grad == false are left out.
ParameterSplit split_parameters(const torch::nn::Module& module);

/// Bytes of one rank's training state by kind (activations are not counted).
struct MemoryFootprint {
  int64_t parameters = 0;       ///< elements of the model's parameters
  int64_t weights = 0;          ///< the model's parameters
  int64_t gradients = 0;        ///< their gradients (fp32 for bf16 parameters)
  int64_t masters = 0;          ///< fp32 master weights of bf16 parameters
  int64_t optimizer_state = 0;  ///< Muon momentum buffers, AdamW moments
  std::string weights_dtype;    ///< "fp32", "bf16" or "mixed"

  int64_t total() const { return weights + gradients + masters + optimizer_state; }
  /// "parameters 1.96B: weights 3.93 GB (bf16), gradients 7.86 GB, masters 7.86 GB, optimizer state
  /// 8.79 GB, total 28.4 GB" (GB = 1e9 bytes).
  std::string text() const;
};

/// Muon on split.muon and AdamW on split.adamw, each with its own base lr; an empty group gets no
/// optimizer. The lr multiplier starts at 1.
///
/// A parameter stored in a 16-bit float type (train.param_dtype: bf16, docs/design.md 2.2) gets an
/// fp32 gradient and an fp32 master. The constructor sets the parameter's grad_dtype to fp32, so
/// that autograd converts each incoming gradient to fp32 before summing it (over the uses of the
/// weight in one backward and over the micro-batches of a step): averaging, clipping and the update
/// read fp32 gradients. The optimizer updates the master (its state is fp32 too) and writes the
/// master, rounded to nearest, back into the parameter, so that an update smaller than half a bf16
/// step accumulates in the master instead of being lost. A master is created at the parameter's
/// first update, only for the parameters this process owns (set_owned): under optimizer-state
/// sharding each rank holds the masters of its share. fp32 parameters are their own masters:
/// nothing is copied and everything is as without this feature.
class Optimizer {
 public:
  Optimizer(const ParameterSplit& split, const OptimizerOptions& options);
  Optimizer(Optimizer&&) noexcept;
  Optimizer& operator=(Optimizer&&) noexcept;
  ~Optimizer();

  /// One update of both groups with the gradients as they are (clip first: clip_gradients()).
  /// Under set_owned, only the owned parameters are updated (and get state); a bf16 parameter
  /// receives its updated master rounded to bf16.
  void step();

  /// Per parameters()[i], the fp32 tensor the update writes: the parameter itself when it is
  /// fp32, else its master (a placeholder without data until the parameter's first update on this
  /// process; during step() it borrows the parameter's gradient).
  std::vector<at::Tensor> masters() const { return masters_; }
  /// Whether some parameter has an fp32 master (is stored in a 16-bit float type).
  bool has_masters() const { return n_with_master_ > 0; }

  /// Optimizer-state sharding (docs/design.md 2.1): `owned[i]` says whether this process updates
  /// parameters()[i] and keeps its state; empty (the default) = every parameter. Throws
  /// std::invalid_argument when the size is not parameters().size().
  void set_owned(std::vector<bool> owned);
  bool owns(size_t i) const { return owned_.empty() || owned_[i]; }
  /// The state of parameters()[i], empty when it has none yet: Muon {momentum_buffer}; AdamW
  /// {exp_avg, exp_avg_sq, step (an int64 scalar)}; a parameter with a master has the master
  /// first. The tensors are the live ones.
  std::vector<at::Tensor> state_of(size_t i) const;
  /// Shapes and dtypes of what state_of(i) returns once the parameter has state (to receive it).
  std::vector<at::Tensor> empty_state_like(size_t i) const;
  /// Installs `state` (as state_of returns it) as the state of parameters()[i].
  void set_state_of(size_t i, const std::vector<at::Tensor>& state);
  /// Frees the state (and masters) of the parameters this process does not own.
  void drop_unowned_state();
  /// Sets every gradient to none (undefined), as torch::optim does by default; or, with
  /// set_to_none = false, zeroes the defined ones in place (one fused kernel), keeping the tensors
  /// that a replayed CUDA graph accumulates into (MicroBatchStep).
  void zero_grad(bool set_to_none = true);
  /// Clips the global gradient norm of both groups to options.grad_clip; returns the norm before
  /// clipping (see clip_grad_norm in grad.h).
  double clip_gradients();

  /// What a training step holds at its peak on this process, from the shapes and the ownership:
  /// every weight and its gradient (fp32 for a 16-bit parameter), and the masters and state of the
  /// owned parameters.
  MemoryFootprint planned_footprint() const;
  /// The same, summed over the tensors that exist now (weights, defined gradients, created masters
  /// and state).
  MemoryFootprint current_footprint() const;

  /// lr of each group = its base lr * multiplier (from Schedule::multiplier).
  void set_lr_multiplier(double multiplier);
  double lr_multiplier() const { return lr_multiplier_; }
  double muon_lr() const;
  double adamw_lr() const;

  /// Every parameter of both groups, Muon's first.
  std::vector<at::Tensor> parameters() const;
  const OptimizerOptions& options() const { return options_; }

  /// Moments, momentum buffers, AdamW step counts, masters and the lr multiplier. Loading into an
  /// Optimizer over the same split (same shapes, same order) continues bitwise; the configured
  /// hyperparameters (options()) win over those stored in the archive. A different split or a
  /// state tensor of another shape is a std::invalid_argument naming the parameter, and so is an
  /// archive with masters loaded into fp32 parameters or one without into 16-bit parameters.
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  /// The Muon or AdamW state of parameters()[i] (keyed by its master), none when absent.
  bool has_inner_state(size_t i) const;
  /// A 16-bit parameter's master: filled with `value` (fp32), or back to a placeholder.
  void set_master(size_t i, const at::Tensor& value);
  void release_master(size_t i);

  OptimizerOptions options_;
  double lr_multiplier_ = 1.0;
  std::vector<at::Tensor> muon_params_, adamw_params_;
  std::vector<at::Tensor> masters_;  // per parameters(): what Muon and AdamW update
  std::vector<bool> with_master_;    // per parameters(): a 16-bit parameter (masters_ is its own)
  std::vector<bool> master_filled_;  // per parameters(): its master holds data
  size_t n_with_master_ = 0;
  std::vector<bool> owned_;  // empty: all
  std::unique_ptr<Muon> muon_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
};

}  // namespace hypnos::train
