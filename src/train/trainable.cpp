// train.trainable: freezing by requires_grad, decided once before the optimizer is built.
#include "hypnos/train/trainable.h"

#include <stdexcept>

namespace hypnos::train {

std::vector<int64_t> inserted_block_indices(const nn::ModelOptions& options) {
  std::vector<int64_t> out;
  int64_t index = 0;
  for (size_t i = 0; i < options.pattern.size(); ++i) {
    ++index;  // the pattern's block i
    for (int64_t after : options.inserted_jet_after) {
      if (after == static_cast<int64_t>(i)) out.push_back(index++);
    }
  }
  return out;
}

int64_t apply_trainable(nn::HybridLM& model, Trainable which) {
  if (which == Trainable::kInserted) {
    const std::vector<int64_t> inserted = inserted_block_indices(model->options);
    if (inserted.empty()) {
      throw std::invalid_argument(
          "train.trainable = inserted: the model has no inserted JetBlocks "
          "(model.inserted_jet_after is empty)");
    }
    for (auto& p : model->parameters()) p.requires_grad_(false);
    for (int64_t i : inserted) {
      for (auto& p : model->block(i).parameters()) p.requires_grad_(true);
    }
  }
  int64_t trainable = 0;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) trainable += p.numel();
  }
  return trainable;
}

}  // namespace hypnos::train
