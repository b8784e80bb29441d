// One micro-batch's forward + loss + backward, eager or as a replayed CUDA graph (whole-step
// capture: the window loop, the loss and autograd's backward all go into one graph; the optimizer
// stays out, so the non-finite policies and the learning-rate schedule work as in eager mode).
#include "hypnos/train/micro_batch_step.h"

#ifdef HYPNOS_WITH_CUDA_TORCH
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>

#include <limits>
#include <unordered_set>

#include "hypnos/log.h"
#include "hypnos/memory/model_memory.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/tasks/batch.h"
#include "hypnos/train/grad.h"
#include "hypnos/train/loss.h"
#include "hypnos/train/run_config.h"
#include "train/autocast_guard.h"

namespace hypnos::train {
namespace {

constexpr int kMaxCaptures = 3;  // layouts captured before the step gives up on graphs

#ifdef HYPNOS_WITH_CUDA_TORCH
// The parameters a captured step accumulates gradients into: frozen ones (train.trainable) get
// none, so the graph neither allocates nor tracks a gradient for them.
std::vector<at::Tensor> trained_parameters(nn::HybridLM& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}
#endif

// Asks the interrupt before a backward node runs; throwing there unwinds out of loss.backward().
struct InterruptHook : torch::autograd::FunctionPreHook {
  explicit InterruptHook(bool (*interrupt)()) : interrupt(interrupt) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& grads) override {
    if (interrupt()) throw StepInterrupted();
    return grads;
  }
  bool (*interrupt)();
};

// Puts an InterruptHook on every node of this micro-batch's backward graph. Not on the parameters'
// AccumulateGrad nodes: they live as long as the parameters, and would collect a hook per step.
void add_interrupt_hooks(const at::Tensor& loss, bool (*interrupt)()) {
  std::vector<torch::autograd::Node*> todo;
  std::unordered_set<torch::autograd::Node*> seen;
  if (loss.grad_fn()) todo.push_back(loss.grad_fn().get());
  while (!todo.empty()) {
    torch::autograd::Node* node = todo.back();
    todo.pop_back();
    if (!seen.insert(node).second) continue;
    if (dynamic_cast<torch::autograd::AccumulateGrad*>(node)) continue;
    node->add_pre_hook(std::make_unique<InterruptHook>(interrupt));
    for (const auto& edge : node->next_edges()) {
      if (edge.function) todo.push_back(edge.function.get());
    }
  }
}

}  // namespace

struct MicroBatchStep::Graph {
#ifdef HYPNOS_WITH_CUDA_TORCH
  at::cuda::CUDAGraph graph;
#endif
  std::vector<int64_t> shape;              // the batch's [B, T]
  std::vector<sleep::WindowPlan> plans;    // with shape, the layout the graph holds
  int64_t capacity = 0;                    // loss positions the graph has room for (padded)
  at::Tensor tokens, mask, index, labels;  // captured inputs (device)
  at::Tensor loss;                         // captured output (device scalar)
  std::vector<const void*> grads;          // the gradient storage the graph accumulates into
};

MicroBatchStepOptions MicroBatchStepOptions::from(const RunConfig& config) {
  MicroBatchStepOptions o;
  o.sleep = config.sleep;
  o.backprop = config.train.backprop;
  o.bf16_autocast = config.train.precision == Precision::kBf16;
  o.cuda_graph = config.train.cuda_graph;
  o.loss_scale = 1.0 / static_cast<double>(config.train.grad_accum);
  return o;
}

MicroBatchStep::MicroBatchStep(nn::HybridLM model, const MicroBatchStepOptions& options,
                               at::Device device)
    : model_(std::move(model)), options_(options), device_(device) {}
MicroBatchStep::MicroBatchStep(MicroBatchStep&&) noexcept = default;
MicroBatchStep& MicroBatchStep::operator=(MicroBatchStep&&) noexcept = default;
MicroBatchStep::~MicroBatchStep() = default;

at::Tensor MicroBatchStep::run_eager(const at::Tensor& tokens, const at::Tensor& mask,
                                     const at::Tensor& index, const at::Tensor& labels,
                                     const std::vector<sleep::WindowPlan>& plans, bool poison,
                                     bool interruptible) {
  at::Tensor loss;
  {
    // The head and the loss at the loss positions only (docs/design.md 1.1): the positions come
    // from the host, so the same ops run eagerly and in a captured graph.
    AutocastGuard autocast(options_.bf16_autocast, device_);
    const auto out =
        sleep::run_windows(model_, tokens, mask, memory::ModelMemory::empty(model_->n_layers()),
                           options_.sleep, options_.backprop, plans, sleep::WakeOutput::kHidden);
    loss = head_cross_entropy(model_, out.hidden, index, labels) * options_.loss_scale;
  }
  if (poison) loss = loss * std::numeric_limits<double>::quiet_NaN();
  if (interruptible) {
    if (options_.interrupt()) throw StepInterrupted();
    // A CPU step can take a minute; an eager CUDA step takes far less than the walk would cost.
    if (!device_.is_cuda()) add_interrupt_hooks(loss, options_.interrupt);
  }
  loss.backward();
  return loss.detach();
}

#ifdef HYPNOS_WITH_CUDA_TORCH
void MicroBatchStep::capture(const tasks::Batch& batch, const std::vector<sleep::WindowPlan>& plans,
                             int64_t capacity) {
  const auto params = trained_parameters(model_);
  graph_.reset();  // frees the previous graph's memory pool first
  auto g = std::make_unique<Graph>();
  g->shape = batch.tokens.sizes().vec();
  g->plans = plans;
  g->capacity = capacity;
  g->tokens = batch.tokens.to(device_);
  g->mask = batch.loss_mask.to(device_);
  const LossPositions positions = loss_positions(batch.targets, batch.loss_mask, capacity);
  g->index = positions.index.to(device_);
  g->labels = positions.labels.to(device_);
  std::vector<at::Tensor> saved;  // the gradients so far (earlier micro-batches of this step)
  {
    at::NoGradGuard no_grad;
    for (const auto& p : params) {
      if (!p.grad().defined()) p.mutable_grad() = zero_gradient_for(p);
      saved.push_back(p.grad().clone());
    }
  }
  // Capture runs on a side stream (the legacy default stream cannot be captured), after one
  // eager warm-up there (cuBLAS handles, autograd's device threads, kernel attributes). The
  // autocast weight cache must be off: cached casts would be captured as stale tensors.
  const auto main_stream = at::cuda::getCurrentCUDAStream();
  const auto side_stream = at::cuda::getStreamFromPool();
  at::cuda::CUDAEvent ready;
  ready.record(main_stream);
  ready.block(side_stream);
  const bool cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  try {
    c10::cuda::CUDAStreamGuard on_side(side_stream);
    run_eager(g->tokens, g->mask, g->index, g->labels, plans, false, /*interruptible=*/false);
    {
      at::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) params[i].grad().copy_(saved[i]);
    }
    g->graph.capture_begin();
    g->loss = run_eager(g->tokens, g->mask, g->index, g->labels, plans, false, false);
    g->graph.capture_end();
  } catch (const c10::OutOfMemoryError&) {
    at::autocast::set_autocast_cache_enabled(cache);
    throw;  // the trainer reports out-of-memory by its type (R11)
  } catch (const std::exception& e) {
    at::autocast::set_autocast_cache_enabled(cache);
    throw std::runtime_error(
        std::string("CUDA graph capture of the training step failed (set train.cuda_graph=false "
                    "to train eagerly): ") +
        e.what());
  }
  at::autocast::set_autocast_cache_enabled(cache);
  at::cuda::CUDAEvent done;
  done.record(side_stream);
  done.block(main_stream);
  for (const auto& p : params) g->grads.push_back(p.grad().data_ptr());
  graph_ = std::move(g);
  ++captures_;
  log::info("training step captured as a CUDA graph (capture " + std::to_string(captures_) +
            ", micro-batch " + c10::str(batch.tokens.sizes()) + ")");
}
#endif

at::Tensor MicroBatchStep::run(const tasks::Batch& batch, bool poison) {
  last_run_graphed_ = false;
  // The window plans from the host copy of the mask: the loop then never reads the device.
  const auto plans = sleep::plan_windows(batch.loss_mask, batch.loss_mask.size(1), options_.sleep);
  const bool graphed = device_.is_cuda() && options_.cuda_graph && !graphs_disabled_ && !poison;
  if (!graphed) {
    const LossPositions positions = loss_positions(batch.targets, batch.loss_mask);
    return run_eager(batch.tokens.to(device_), batch.loss_mask.to(device_),
                     positions.index.to(device_), positions.labels.to(device_), plans, poison,
                     /*interruptible=*/options_.interrupt != nullptr);
  }
#ifdef HYPNOS_WITH_CUDA_TORCH
  // A graph holds the loss positions padded to a capacity: a power of two, so that a batch with a
  // few more positions than the captured one is rare and a new capture grows it at least twofold.
  const int64_t count = loss_positions(batch.targets, batch.loss_mask).count;
  const auto params = trained_parameters(model_);
  bool valid = graph_ && graph_->shape == batch.tokens.sizes().vec() && graph_->plans == plans &&
               graph_->capacity >= count && graph_->grads.size() == params.size();
  for (size_t i = 0; valid && i < params.size(); ++i) {
    valid = params[i].grad().defined() && params[i].grad().data_ptr() == graph_->grads[i];
  }
  if (!valid) {
    if (captures_ >= kMaxCaptures) {
      graphs_disabled_ = true;
      graph_.reset();
      log::info("CUDA graphs off for this run: the micro-batch layout changed after " +
                std::to_string(captures_) + " captures; running eagerly");
      return run(batch, poison);
    }
    int64_t capacity = 1;
    while (capacity < count) capacity *= 2;
    capture(batch, plans, std::min(capacity, batch.tokens.numel()));
  } else {
    const LossPositions positions =
        loss_positions(batch.targets, batch.loss_mask, graph_->capacity);
    graph_->tokens.copy_(batch.tokens);
    graph_->mask.copy_(batch.loss_mask);
    graph_->index.copy_(positions.index);
    graph_->labels.copy_(positions.labels);
  }
  graph_->graph.replay();
  last_run_graphed_ = true;
  return graph_->loss.clone();  // the captured output is overwritten by the next replay
#else
  TORCH_CHECK(false, "MicroBatchStep: a CUDA device in a build without CUDA");
#endif
}

}  // namespace hypnos::train
