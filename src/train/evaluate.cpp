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

tasks::MetricAccumulator evaluate(nn::HybridLM& model, const tasks::Task& task,
                                  const sleep::SleepOptions& sleep, const EvalOptions& options) {
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  const auto device = model->parameters().front().device();
  tasks::MetricAccumulator metrics;
  for (int64_t first = 0; first < options.examples; first += options.batch_size) {
    const int64_t n = std::min(options.batch_size, options.examples - first);
    const auto batch = tasks::make_batch(task, tasks::Split::kTest, static_cast<uint64_t>(first), n);
    const auto tokens = batch.tokens.to(device);
    const auto mask = batch.loss_mask.to(device);
    at::Tensor logits;
    {
      AutocastGuard autocast(options.bf16_autocast, device);
      logits = sleep::run_windows(model, tokens, mask, memory::ModelMemory::empty(model->n_layers()),
                                  sleep)
                   .logits;
    }
    logits = logits.to(at::kFloat);
    const auto logp = at::log_softmax(logits, -1);
    const auto targets = batch.targets.to(device);
    const auto nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    tasks::add_batch(metrics, batch, logits.argmax(-1), nll);
  }
  if (was_training) model->train();
  return metrics;
}

}  // namespace hypnos::train
