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
/// a pure function of its index, so the result does not depend on the thread count).
Batch make_batch(const Task& task, Split split, uint64_t first_index, int64_t batch_size);

/// Stacks examples of equal length (from a generator or a JSONL file) into a Batch.
Batch collate(std::vector<Example> examples);

/// First example index of `rank` at training step `step`: step * (local_batch * world_size) +
/// rank * local_batch (docs/tasks.md 0: training example (s, b) is index s * B + b of split 1).
uint64_t train_first_index(int64_t step, int64_t rank, int64_t local_batch, int64_t world_size);

/// Scores a batch: predictions [B, T] (argmax ids) and nll [B, T] (-log p(target)), any device.
void add_batch(MetricAccumulator& metrics, const Batch& batch, const at::Tensor& predictions,
               const at::Tensor& nll);

}  // namespace hypnos::tasks
