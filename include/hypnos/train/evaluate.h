// Evaluation: the model reads test examples through the same window/sleep loop as in training, and
// the task's metric scores argmax predictions and target NLLs per difficulty bucket.
#pragma once
#include <cstdint>
#include <vector>

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

/// The test indices [0, examples) in the batches evaluate runs, at most batch_size each: in index
/// order for tasks whose examples share one length; longest first for tasks whose examples have
/// lengths of their own (token files), so that each batch is padded to little above its own
/// examples (1,600 problems of 2,000-3,300 tokens in batches of 32: 0.5% of the batch tokens are
/// padding, against 18.5% in index order) and the first batch is the largest (memory runs out at
/// once, if at all). Ties keep index order.
std::vector<std::vector<uint64_t>> eval_batches(const tasks::Task& task, int64_t examples,
                                                int64_t batch_size);

/// Per row of scores [P, vocab]: the argmax over the columns `ids` [k] (as an id), or over all
/// columns when ids is undefined.
at::Tensor argmax_over(const at::Tensor& scores, const at::Tensor& ids);

}  // namespace hypnos::train
