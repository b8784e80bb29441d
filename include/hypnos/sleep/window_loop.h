// The window loop of DESIGN.md section 1: the one place that decides how many passes each window
// gets, how SSM state flows between passes and windows, and what memory survives eviction.
#pragma once
#include <ATen/ATen.h>

#include "hypnos/memory/model_memory.h"
#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/sleep/sleep_options.h"

namespace hypnos::sleep {

struct WindowLoopOutput {
  /// Wake logits [B, T, vocab]. Only windows that produce wake logits are filled (all windows when
  /// no loss mask is given; otherwise the windows holding a loss token); the others are zeros.
  at::Tensor logits;
  /// The memory after the last window's eviction (what the next call continues from).
  memory::ModelMemory memory;
};

/// Runs `tokens` [B, T] window by window through `model`, starting from `memory` (e.g.
/// ModelMemory::empty(model->n_layers())). `loss_mask` [B, T] (bool or 0/1) or undefined: a window
/// "has loss tokens" when any row has one there; the loss_free schedule requires it.
/// Gradients flow through every pass and window unless `backprop.truncate_every` says otherwise.
WindowLoopOutput run_windows(nn::HybridLM& model, const at::Tensor& tokens,
                             const at::Tensor& loss_mask, memory::ModelMemory memory,
                             const SleepOptions& sleep, const BackpropOptions& backprop = {});

}  // namespace hypnos::sleep
