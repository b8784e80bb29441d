// Batch generation and collation; the examples come from the task, the tensors are plain copies.
#include "hypnos/tasks/batch.h"

#include <ATen/Parallel.h>

namespace hypnos::tasks {

Batch make_batch(const Task& task, Split split, uint64_t first_index, int64_t batch_size) {
  if (batch_size < 1) {
    throw std::invalid_argument("make_batch: batch_size = " + std::to_string(batch_size) +
                                ", expected >= 1");
  }
  std::vector<Example> examples(batch_size);
  at::parallel_for(0, batch_size, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) examples[b] = task.example(split, first_index + b);
  });
  return collate(std::move(examples), task.pad_id());
}

Batch make_batch(const Task& task, Split split, const std::vector<uint64_t>& indices) {
  if (indices.empty()) throw std::invalid_argument("make_batch: no indices");
  std::vector<Example> examples(indices.size());
  at::parallel_for(0, static_cast<int64_t>(indices.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) examples[b] = task.example(split, indices[b]);
  });
  return collate(std::move(examples), task.pad_id());
}

Batch collate(std::vector<Example> examples, int64_t pad_id) {
  if (examples.empty()) throw std::invalid_argument("collate: no examples");
  const int64_t b_size = static_cast<int64_t>(examples.size());
  int64_t t_size = 0;
  for (const Example& ex : examples) {
    t_size = std::max(t_size, static_cast<int64_t>(ex.tokens.size()));
  }
  Batch batch;
  batch.tokens = at::empty({b_size, t_size}, at::kLong);
  batch.targets = at::empty({b_size, t_size}, at::kLong);
  batch.loss_mask = at::empty({b_size, t_size}, at::kBool);
  int64_t* tokens = batch.tokens.data_ptr<int64_t>();
  int64_t* targets = batch.targets.data_ptr<int64_t>();
  bool* mask = batch.loss_mask.data_ptr<bool>();
  for (int64_t b = 0; b < b_size; ++b) {
    const Example& ex = examples[b];
    const int64_t n = static_cast<int64_t>(ex.tokens.size());
    if (static_cast<int64_t>(ex.targets.size()) != n ||
        static_cast<int64_t>(ex.loss_mask.size()) != n) {
      throw std::invalid_argument(
          "collate: example " + std::to_string(b) + " has lengths " +
          std::to_string(ex.tokens.size()) + "/" + std::to_string(ex.targets.size()) + "/" +
          std::to_string(ex.loss_mask.size()) + " (tokens/targets/loss_mask), expected one length");
    }
    std::copy(ex.tokens.begin(), ex.tokens.end(), tokens + b * t_size);
    std::copy(ex.targets.begin(), ex.targets.end(), targets + b * t_size);
    std::fill(tokens + b * t_size + n, tokens + (b + 1) * t_size, pad_id);
    std::fill(targets + b * t_size + n, targets + (b + 1) * t_size, pad_id);
    for (int64_t i = 0; i < t_size; ++i) mask[b * t_size + i] = i < n && ex.loss_mask[i] != 0;
  }
  batch.examples = std::move(examples);
  return batch;
}

uint64_t train_first_index(int64_t step, int64_t rank, int64_t local_batch, int64_t world_size) {
  if (step < 0 || local_batch < 1 || world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument("train_first_index: step = " + std::to_string(step) +
                                ", rank = " + std::to_string(rank) +
                                ", local_batch = " + std::to_string(local_batch) +
                                ", world_size = " + std::to_string(world_size) +
                                ": expected step >= 0, local_batch >= 1, 0 <= rank < world_size");
  }
  return static_cast<uint64_t>(step) * static_cast<uint64_t>(local_batch * world_size) +
         static_cast<uint64_t>(rank * local_batch);
}

void add_batch(MetricAccumulator& metrics, const Batch& batch, const at::Tensor& predictions,
               const at::Tensor& nll) {
  const auto shape = batch.tokens.sizes();
  if (predictions.sizes() != shape || nll.sizes() != shape) {
    throw std::invalid_argument("add_batch: predictions " + c10::str(predictions.sizes()) +
                                " and nll " + c10::str(nll.sizes()) +
                                " must both be [B, T] = " + c10::str(shape));
  }
  const at::Tensor p = predictions.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor l = nll.to(at::kCPU, at::kDouble).contiguous();
  const int64_t t_size = shape[1];
  for (size_t b = 0; b < batch.examples.size(); ++b) {
    const int64_t* pp = p.data_ptr<int64_t>() + b * t_size;
    const double* lp = l.data_ptr<double>() + b * t_size;
    const int64_t n = static_cast<int64_t>(batch.examples[b].targets.size());  // before padding
    metrics.add(batch.examples[b], std::vector<int64_t>(pp, pp + n),
                std::vector<double>(lp, lp + n));
  }
}

}  // namespace hypnos::tasks
