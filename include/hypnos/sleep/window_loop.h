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

/// What one window must do, decided by the schedule before any compute.
struct WindowPlan {
  bool sleeps = false;       ///< N passes (else one)
  bool wants_logits = true;  ///< its wake logits are computed and returned
};

struct WindowResult {
  at::Tensor logits;           ///< [B, L_w, vocab], undefined when !plan.wants_logits
  memory::ModelMemory memory;  ///< after eviction: what the next window starts from
};

/// One window of the loop: embed once; the wake pass; N-1 more passes if `plan.sleeps`; eviction.
/// run_windows calls it per window; Session calls it for each window it reads and for queries.
WindowResult sleep_window(nn::HybridLM& model, const at::Tensor& tokens,
                          const memory::ModelMemory& start, const WindowPlan& plan,
                          const SleepOptions& opts);

/// Runs `tokens` [B, T] window by window through `model`, starting from `memory` (e.g.
/// ModelMemory::empty(model->n_layers())). `loss_mask` [B, T] (bool or 0/1) or undefined: a window
/// "has loss tokens" when any row has one there; the loss_free schedule requires it.
/// Gradients flow through every pass and window unless `backprop.truncate_every` says otherwise.
/// `loss_positions` [T] bool on the CPU, when given, is loss_mask.any(0) already on the host: the
/// window plans are then made without reading the device (a CUDA graph capture may not).
WindowLoopOutput run_windows(nn::HybridLM& model, const at::Tensor& tokens,
                             const at::Tensor& loss_mask, memory::ModelMemory memory,
                             const SleepOptions& sleep, const BackpropOptions& backprop = {},
                             const at::Tensor& loss_positions = {});

}  // namespace hypnos::sleep
