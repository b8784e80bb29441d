// Forward, loss and backward of one training micro-batch: the window/sleep loop under autocast, the
// masked cross entropy, and loss.backward() into the parameters' .grad. On a CUDA device it is
// captured once as a CUDA graph and replayed on every later micro-batch of the same layout, so the
// thousands of small kernels of a window loop (a few per op, per layer, per pass, per window) cost
// one launch instead of one host dispatch each. The trainer and `hypnos_bench train` both use it.
#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/sleep/sleep_options.h"

namespace hypnos::tasks {
struct Batch;
}
namespace hypnos::sleep {
struct WindowPlan;
}

namespace hypnos::train {

struct RunConfig;

struct MicroBatchStepOptions {
  sleep::SleepOptions sleep;
  sleep::BackpropOptions backprop;
  bool bf16_autocast = true;  ///< CUDA only (CPU runs stay fp32)
  bool cuda_graph = true;     ///< CUDA only: capture and replay (see MicroBatchStep)
  double loss_scale = 1.0;    ///< the loss is multiplied by this before backward (1 / grad_accum)
  /// When set, an eager micro-batch asks it after its forward and, on the CPU, before each node of
  /// its backward, and throws StepInterrupted once it returns true: a stop request then waits for
  /// one autograd node, not for the rest of the step. A CUDA graph's capture and replays never ask.
  bool (*interrupt)() = nullptr;

  /// The run's: sleep, train.truncate_every / recompute, precision, cuda_graph, 1 / grad_accum.
  static MicroBatchStepOptions from(const RunConfig& config);
};

/// Thrown by MicroBatchStep::run when options.interrupt asked it to stop: the parameters' .grad are
/// then partial (zero them); the weights are untouched.
class StepInterrupted : public std::runtime_error {
 public:
  StepInterrupted() : std::runtime_error("the training step was interrupted") {}
};

class MicroBatchStep {
 public:
  /// `model` must already live on `device`; its parameters' gradients are accumulated into.
  MicroBatchStep(nn::HybridLM model, const MicroBatchStepOptions& options, at::Device device);
  MicroBatchStep(MicroBatchStep&&) noexcept;
  MicroBatchStep& operator=(MicroBatchStep&&) noexcept;
  ~MicroBatchStep();

  /// Adds d(loss * loss_scale)/d(parameters) to the parameters' .grad and returns loss * loss_scale
  /// as a device scalar (not read back: no host sync). `batch` holds CPU tensors. `poison` makes
  /// the loss NaN before backward (docs/reliability.md R8 fault injection; such a micro-batch runs
  /// eagerly).
  ///
  /// The head (final norm + lm_head) and the cross entropy run at the loss positions only.
  ///
  /// Graphed (CUDA and options.cuda_graph): the first call for a layout (the batch shape, the
  /// window plans of its loss mask: which windows sleep, want logits, decide per row, and room for
  /// its number of loss positions, rounded up to a power of two) runs one eager warm-up, restores
  /// the gradients, captures the step on a side stream and replays it; later calls copy the batch
  /// (its loss positions padded to the captured room) into the captured input tensors and replay.
  /// Gradients are accumulated in place, so they must stay the same tensors between calls (zero
  /// them in place; a gradient set to none or replaced makes the next call capture again). After a
  /// third layout the step stops capturing and runs eagerly (a task whose layout changes every
  /// batch would otherwise capture every time).
  at::Tensor run(const tasks::Batch& batch, bool poison = false);

  /// Whether run() accumulates into gradient tensors that must stay the same between calls (CUDA
  /// graphs on): zero them in place (Optimizer::zero_grad(false)), never set them to none.
  bool keeps_gradient_tensors() const {
    return device_.is_cuda() && options_.cuda_graph && !graphs_disabled_;
  }
  /// Whether the last run replayed a CUDA graph.
  bool last_run_graphed() const { return last_run_graphed_; }
  /// CUDA graphs captured so far.
  int captures() const { return captures_; }

 private:
  /// `index` and `labels`: the micro-batch's LossPositions on the device.
  at::Tensor run_eager(const at::Tensor& tokens, const at::Tensor& mask, const at::Tensor& index,
                       const at::Tensor& labels, const std::vector<sleep::WindowPlan>& plans,
                       bool poison, bool interruptible);
  /// Replaces the graph by one of this batch's layout, with room for `capacity` loss positions
  /// (CUDA builds).
  void capture(const tasks::Batch& batch, const std::vector<sleep::WindowPlan>& plans,
               int64_t capacity);

  struct Graph;  // the captured graph and its static tensors (CUDA builds)
  nn::HybridLM model_;
  MicroBatchStepOptions options_;
  at::Device device_;
  std::unique_ptr<Graph> graph_;
  int captures_ = 0;
  bool graphs_disabled_ = false;
  bool last_run_graphed_ = false;
};

}  // namespace hypnos::train
