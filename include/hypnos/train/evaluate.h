// Evaluation: the model reads test examples through the same window/sleep loop as in training, and
// the task's metric scores argmax predictions and target NLLs per difficulty bucket.
#pragma once
#include <cstdint>

#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/sleep/sleep_options.h"
#include "hypnos/tasks/metrics.h"
#include "hypnos/tasks/task.h"

namespace hypnos::train {

struct EvalOptions {
  int64_t examples = 2048;     ///< test indices 0 .. examples-1
  int64_t batch_size = 512;    ///< sequences per forward
  bool bf16_autocast = false;  ///< CUDA only
};

/// Scores test examples [0, options.examples) of `task`: a prediction is the argmax of the wake
/// logits over task.answer_ids() (the whole vocabulary when empty). Leaves the model in the mode it
/// found it.
tasks::MetricAccumulator evaluate(nn::HybridLM& model, const tasks::Task& task,
                                  const sleep::SleepOptions& sleep, const EvalOptions& options);

/// Per row of scores [P, vocab]: the argmax over the columns `ids` [k] (as an id), or over all
/// columns when ids is undefined.
at::Tensor argmax_over(const at::Tensor& scores, const at::Tensor& ids);

/// The loss positions of a batch, read on the host from its CPU mask: flat indices into the B * T
/// positions, the targets there, and their count. Padded up to `capacity` (0: no padding) with
/// index 0 and the label kIgnoreLabel, so that a captured CUDA graph sees tensors of one shape
/// whatever the batch's count.
struct LossPositions {
  static constexpr int64_t kIgnoreLabel = -100;
  at::Tensor index;   ///< [capacity or count] int64
  at::Tensor labels;  ///< [capacity or count] int64, kIgnoreLabel in the padding
  int64_t count = 0;  ///< loss positions (> 0)
};
/// targets: [B, T] int64; loss_mask: [B, T] bool or 0/1, both on the CPU. Throws when the mask
/// holds no loss position or more than `capacity` (> 0).
LossPositions loss_positions(const at::Tensor& targets, const at::Tensor& loss_mask,
                             int64_t capacity = 0);

/// The training loss with the head only where the loss is (docs/design.md 1.1): the hidden states
/// [B, T, D] of run_windows (WakeOutput::kHidden) at the flat positions `index` [P] go through the
/// head (final norm + lm_head) and the mean cross entropy against `labels` [P] is taken over the
/// labels other than LossPositions::kIgnoreLabel. Equals masked_cross_entropy of the full logits
/// (to round-off: the head's matrix products see P rows instead of B * T) and holds [P, vocab]
/// logits instead of [B, T, vocab].
at::Tensor head_cross_entropy(nn::HybridLM& model, const at::Tensor& hidden,
                              const at::Tensor& index, const at::Tensor& labels);

/// Masked cross entropy of full wake logits: (sum of -log p(target) over loss positions) / their
/// count, the definition head_cross_entropy is tested against. logits: [B, T, vocab]; targets:
/// [B, T] int64; loss_mask: [B, T] bool.
at::Tensor masked_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                const at::Tensor& loss_mask);

}  // namespace hypnos::train
