// Examples as tensors: a batch of consecutive example indices, collated into [B, T] CPU tensors,
// and the index arithmetic that gives each rank of a distributed run its own examples
// (docs/reliability.md R10).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "hypnos/tasks/metrics.h"
#include "hypnos/tasks/task.h"

namespace hypnos::tasks {

struct Batch {
  at::Tensor tokens;              ///< [B, T] int64, CPU
  at::Tensor targets;             ///< [B, T] int64, CPU; scored where loss_mask is true
  at::Tensor loss_mask;           ///< [B, T] bool, CPU
  std::vector<Example> examples;  ///< the B examples (groups and fields for metrics and logs)
};

/// Examples first_index .. first_index + batch_size - 1 of `split`, generated in parallel (each one
/// a pure function of its index, so the result does not depend on the thread count), padded with
/// task.pad_id() to the longest.
Batch make_batch(const Task& task, Split split, uint64_t first_index, int64_t batch_size);
/// The batch of examples (split, i) for i in `indices`, in that order.
Batch make_batch(const Task& task, Split split, const std::vector<uint64_t>& indices);

/// Stacks examples into a Batch [B, T_max]: an example shorter than the longest gets `pad_id` as
/// token and target and loss_mask 0 after its end (right padding: under a causal model the
/// padding never reaches an earlier position). tokens, targets and loss_mask of one example must
/// have one length.
Batch collate(std::vector<Example> examples, int64_t pad_id = 0);

/// First example index of `rank` at training step `step`: step * (local_batch * world_size) +
/// rank * local_batch (docs/tasks.md 0: training example (s, b) is index s * B + b of split 1).
uint64_t train_first_index(int64_t step, int64_t rank, int64_t local_batch, int64_t world_size);

/// Scores a batch: predictions [B, T] (argmax ids) and nll [B, T] (-log p(target)), any device.
void add_batch(MetricAccumulator& metrics, const Batch& batch, const at::Tensor& predictions,
               const at::Tensor& nll);

}  // namespace hypnos::tasks
