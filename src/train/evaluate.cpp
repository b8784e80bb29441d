// Evaluation through the window loop.
#include "hypnos/train/evaluate.h"

#include "hypnos/memory/model_memory.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/tasks/batch.h"
#include "train/autocast_guard.h"

namespace hypnos::train {

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
