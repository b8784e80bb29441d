// Evaluation through the window loop.
#include "hypnos/train/evaluate.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "hypnos/memory/model_memory.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/tasks/batch.h"
#include "train/autocast_guard.h"

namespace hypnos::train {

at::Tensor argmax_over(const at::Tensor& scores, const at::Tensor& ids) {
  if (!ids.defined()) return scores.argmax(-1);
  return ids.index_select(0, scores.index_select(-1, ids).argmax(-1));
}

std::vector<std::vector<uint64_t>> eval_batches(const tasks::Task& task, int64_t examples,
                                                int64_t batch_size) {
  if (examples < 0 || batch_size < 1) {
    throw std::invalid_argument("eval_batches: examples = " + std::to_string(examples) +
                                ", batch_size = " + std::to_string(batch_size) +
                                ": expected examples >= 0, batch_size >= 1");
  }
  std::vector<uint64_t> order(static_cast<size_t>(examples));
  std::iota(order.begin(), order.end(), uint64_t{0});
  std::vector<int64_t> length(order.size());
  bool one_length = true;
  for (size_t i = 0; i < order.size(); ++i) {
    length[i] = task.example_length(tasks::Split::kTest, i);
    one_length = one_length && length[i] == length[0];
  }
  if (!one_length) {
    std::stable_sort(order.begin(), order.end(),
                     [&](uint64_t a, uint64_t b) { return length[a] > length[b]; });
  }
  std::vector<std::vector<uint64_t>> batches;
  for (size_t first = 0; first < order.size(); first += static_cast<size_t>(batch_size)) {
    const size_t last = std::min(order.size(), first + static_cast<size_t>(batch_size));
    batches.emplace_back(order.begin() + first, order.begin() + last);
  }
  return batches;
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
  for (const std::vector<uint64_t>& indices :
       eval_batches(task, options.examples, options.batch_size)) {
    const auto batch = tasks::make_batch(task, tasks::Split::kTest, indices);
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
