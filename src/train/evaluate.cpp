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

at::Tensor masked_cross_entropy_graph_safe(const at::Tensor& logits, const at::Tensor& targets,
                                           const at::Tensor& loss_mask) {
  constexpr int64_t kIgnore = -100;
  const auto labels = at::where(loss_mask.to(at::kBool), targets, kIgnore).reshape({-1});
  const auto scored = logits.reshape({-1, logits.size(-1)}).to(at::kFloat);
  return at::nll_loss(at::log_softmax(scored, -1), labels, /*weight=*/{}, at::Reduction::Mean,
                      kIgnore);
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
    at::Tensor logits;
    {
      AutocastGuard autocast(options.bf16_autocast, device);
      logits = sleep::run_windows(model, tokens, mask,
                                  memory::ModelMemory::empty(model->n_layers()), sleep)
                   .logits;
    }
    // Only the loss positions are scored: softmax over them alone, not over [B, T, vocab] (a GSM
    // batch would otherwise hold a second copy of its logits in fp32).
    const auto bool_mask = mask.to(at::kBool);
    const auto scored = logits.index({bool_mask}).to(at::kFloat);  // [P, vocab]
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
