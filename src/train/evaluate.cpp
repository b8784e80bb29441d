// Evaluation through the window loop, and the masked cross entropy the trainer minimises.
#include "hypnos/train/evaluate.h"

#include "hypnos/memory/model_memory.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/tasks/batch.h"
#include "train/autocast_guard.h"

namespace hypnos::train {

at::Tensor masked_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                const at::Tensor& loss_mask) {
  const auto mask = loss_mask.to(at::kBool);
  const auto scored = logits.index({mask}).to(at::kFloat);  // [P, vocab]
  const auto labels = targets.index({mask});                // [P]
  TORCH_CHECK(scored.size(0) > 0, "masked_cross_entropy: the batch has no loss positions");
  return at::nll_loss(at::log_softmax(scored, -1), labels);
}

LossPositions loss_positions(const at::Tensor& targets, const at::Tensor& loss_mask,
                             int64_t capacity) {
  TORCH_CHECK(targets.is_cpu() && loss_mask.is_cpu() && targets.sizes() == loss_mask.sizes() &&
                  targets.dim() == 2,
              "loss_positions: targets and loss_mask must be [B, T] on the CPU, got ",
              targets.sizes(), " and ", loss_mask.sizes());
  LossPositions p;
  p.index = loss_mask.to(at::kBool).reshape({-1}).nonzero().squeeze(1);
  p.count = p.index.size(0);
  TORCH_CHECK(p.count > 0, "loss_positions: the batch has no loss positions");
  TORCH_CHECK(capacity == 0 || p.count <= capacity, "loss_positions: ", p.count,
              " loss positions exceed the capacity ", capacity);
  p.labels = targets.reshape({-1}).index_select(0, p.index).to(at::kLong);
  if (capacity > p.count) {
    p.index = at::cat({p.index, at::zeros({capacity - p.count}, p.index.options())});
    p.labels = at::cat({p.labels, at::full({capacity - p.count}, LossPositions::kIgnoreLabel,
                                           p.labels.options())});
  }
  return p;
}

at::Tensor head_cross_entropy(nn::HybridLM& model, const at::Tensor& hidden,
                              const at::Tensor& index, const at::Tensor& labels) {
  TORCH_CHECK(hidden.dim() == 3 && index.dim() == 1 && labels.sizes() == index.sizes(),
              "head_cross_entropy: hidden must be [B, T, D] and index, labels [P], got ",
              hidden.sizes(), ", ", index.sizes(), ", ", labels.sizes());
  const auto rows = hidden.reshape({-1, hidden.size(2)}).index_select(0, index);  // [P, D]
  const auto scored = model->logits(rows).to(at::kFloat);                         // [P, vocab]
  return at::nll_loss(at::log_softmax(scored, -1), labels, /*weight=*/{}, at::Reduction::Mean,
                      LossPositions::kIgnoreLabel);
}

at::Tensor argmax_over(const at::Tensor& scores, const at::Tensor& ids) {
  if (!ids.defined()) return scores.argmax(-1);
  return ids.index_select(0, scores.index_select(-1, ids).argmax(-1));
}

tasks::MetricAccumulator evaluate(nn::HybridLM& model, const tasks::Task& task,
                                  const sleep::SleepOptions& sleep, const EvalOptions& options) {
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  const auto device = model->parameters().front().device();
  tasks::MetricAccumulator metrics;
  const std::vector<int64_t> ids = task.answer_ids();
  const at::Tensor answer_ids =
      ids.empty() ? at::Tensor() : at::tensor(ids, at::TensorOptions().dtype(at::kLong)).to(device);
  for (int64_t first = 0; first < options.examples; first += options.batch_size) {
    const int64_t n = std::min(options.batch_size, options.examples - first);
    const auto batch =
        tasks::make_batch(task, tasks::Split::kTest, static_cast<uint64_t>(first), n);
    const auto tokens = batch.tokens.to(device);
    const auto mask = batch.loss_mask.to(device);
    // Only the loss positions get logits: the head runs on their hidden states alone, never on
    // [B, T, vocab] (docs/design.md 1.1).
    const auto bool_mask = mask.to(at::kBool);
    at::Tensor scored;  // [P, vocab]
    {
      AutocastGuard autocast(options.bf16_autocast, device);
      const at::Tensor hidden =
          sleep::run_windows(model, tokens, mask, memory::ModelMemory::empty(model->n_layers()),
                             sleep, {}, {}, sleep::WakeOutput::kHidden)
              .hidden;
      scored = model->logits(hidden.index({bool_mask})).to(at::kFloat);
    }
    const auto targets = batch.targets.to(device).index({bool_mask});
    auto nll = at::zeros(mask.sizes(), scored.options());
    auto predictions = at::zeros(mask.sizes(), targets.options());
    const auto target_logp = at::log_softmax(scored, -1).gather(-1, targets.unsqueeze(-1));
    nll.index_put_({bool_mask}, -target_logp.squeeze(-1));
    predictions.index_put_({bool_mask}, argmax_over(scored, answer_ids));
    tasks::add_batch(metrics, batch, predictions, nll);
  }
  if (was_training) model->train();
  return metrics;
}

}  // namespace hypnos::train
