// The training loss (hypnos/train/loss.h): the head at the loss positions only, and the masked
// cross entropy of full logits that defines it.
#include "hypnos/train/loss.h"

namespace hypnos::train {

at::Tensor masked_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                const at::Tensor& loss_mask) {
  const auto mask = loss_mask.to(at::kBool);
  const auto scored = logits.index({mask}).to(at::kFloat);  // [P, vocab]
  const auto labels = targets.index({mask});                // [P]
  TORCH_CHECK(scored.size(0) > 0, "masked_cross_entropy: the batch has no loss positions");
  return at::nll_loss(at::log_softmax(scored, -1), labels);
}

LossPositions loss_positions(const at::Tensor& targets, const at::Tensor& loss_mask,
                             int64_t capacity) {
  TORCH_CHECK(targets.is_cpu() && loss_mask.is_cpu() && targets.sizes() == loss_mask.sizes() &&
                  targets.dim() == 2,
              "loss_positions: targets and loss_mask must be [B, T] on the CPU, got ",
              targets.sizes(), " and ", loss_mask.sizes());
  LossPositions p;
  p.index = loss_mask.to(at::kBool).reshape({-1}).nonzero().squeeze(1);
  p.count = p.index.size(0);
  TORCH_CHECK(p.count > 0, "loss_positions: the batch has no loss positions");
  TORCH_CHECK(capacity == 0 || p.count <= capacity, "loss_positions: ", p.count,
              " loss positions exceed the capacity ", capacity);
  p.labels = targets.reshape({-1}).index_select(0, p.index).to(at::kLong);
  if (capacity > p.count) {
    p.index = at::cat({p.index, at::zeros({capacity - p.count}, p.index.options())});
    p.labels = at::cat({p.labels, at::full({capacity - p.count}, LossPositions::kIgnoreLabel,
                                           p.labels.options())});
  }
  return p;
}

at::Tensor head_cross_entropy(nn::HybridLM& model, const at::Tensor& hidden,
                              const at::Tensor& index, const at::Tensor& labels) {
  TORCH_CHECK(hidden.dim() == 3 && index.dim() == 1 && labels.sizes() == index.sizes(),
              "head_cross_entropy: hidden must be [B, T, D] and index, labels [P], got ",
              hidden.sizes(), ", ", index.sizes(), ", ", labels.sizes());
  const auto rows = hidden.reshape({-1, hidden.size(2)}).index_select(0, index);  // [P, D]
  const auto scored = model->logits(rows).to(at::kFloat);                         // [P, vocab]
  return at::nll_loss(at::log_softmax(scored, -1), labels, /*weight=*/{}, at::Reduction::Mean,
                      LossPositions::kIgnoreLabel);
}

}  // namespace hypnos::train
