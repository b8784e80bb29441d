// The training loss: masked cross entropy over a batch's loss positions, with the head (final norm
// + lm_head) run at those positions only, and the full-logits definition it is tested against.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#include "hypnos/nn/hybrid_lm.h"

namespace hypnos::train {

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
