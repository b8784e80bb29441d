// The window loop of docs/design.md section 1: the one place that decides how many passes each
// window gets, how SSM state flows between passes and windows, and what memory survives eviction.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "hypnos/memory/model_memory.h"
#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/sleep/sleep_options.h"

namespace hypnos::sleep {

/// What run_windows computes of the wake pass's output (docs/design.md 1.1).
enum class WakeOutput {
  kLogits,  ///< the logits [B, T, vocab] and the hidden states
  /// Only the hidden states: the caller runs the head (final norm + lm_head) where it needs logits,
  /// e.g. at the loss positions alone (full logits of a large vocabulary cost more memory than the
  /// rest of a window's activations).
  kHidden,
};

struct WindowLoopOutput {
  /// Wake logits [B, T, vocab] (WakeOutput::kLogits; undefined with kHidden). Only windows that
  /// produce wake logits are filled (all windows when no loss mask is given; otherwise the windows
  /// holding a loss token, and under loss_free only the rows holding one there); the others are
  /// zeros.
  at::Tensor logits;
  /// The wake pass's last hidden states [B, T, D], what the head reads (HybridLM::logits turns
  /// them into logits). Zeros wherever the logits are zeros.
  at::Tensor hidden;
  /// The memory after the last window's eviction (what the next call continues from).
  memory::ModelMemory memory;
};

/// What one window must do, decided by the schedule before any compute (plan_windows).
struct WindowPlan {
  bool sleeps = false;       ///< N passes (else one)
  bool wants_logits = true;  ///< its wake logits are computed and returned
  /// loss_free, when some rows hold loss tokens in the window and others do not
  /// (docs/design.md 1.2, decided per example): the window sleeps; the rows with loss tokens take
  /// the memory of one ordinary pass and their wake logits, the others the memory of the N passes
  /// and zero logits.
  bool per_row = false;

  bool operator==(const WindowPlan&) const = default;
};

struct WindowResult {
  /// The wake pass's last hidden states [B, L_w, D] (model->logits(hidden) are the wake logits),
  /// undefined when !plan.wants_logits; under a per-row plan zeros in the rows without loss tokens.
  at::Tensor hidden;
  memory::ModelMemory memory;  ///< after eviction: what the next window starts from
};

/// One window of the loop: embed once; the wake pass; N-1 more passes if `plan.sleeps`; eviction.
/// run_windows calls it per window; Session calls it for each window it reads and for queries.
/// `loss_rows` [B] bool (on the model's device) is required by a per-row plan: the rows that hold
/// loss tokens in this window.
/// `checkpoint_blocks` (train.recompute = block, inside the window replay): in grad mode, each
/// block call keeps only its inputs and runs again in backward.
WindowResult sleep_window(nn::HybridLM& model, const at::Tensor& tokens,
                          const memory::ModelMemory& start, const WindowPlan& plan,
                          const SleepOptions& opts, const at::Tensor& loss_rows = {},
                          bool checkpoint_blocks = false);

/// The plan of every window of a sequence of `seq_len` tokens under `sleep`'s schedule.
/// `loss_mask` [B, T] on the CPU (bool or 0/1), or undefined: every window then has loss tokens
/// in every row (all wake logits wanted). evicted: every window but the last sleeps. loss_free:
/// a window sleeps unless every row holds a loss token in it; per_row when only some do.
std::vector<WindowPlan> plan_windows(const at::Tensor& loss_mask, int64_t seq_len,
                                     const SleepOptions& sleep);

/// Runs `tokens` [B, T] window by window through `model`, starting from `memory` (e.g.
/// ModelMemory::empty(model->n_layers())). `loss_mask` [B, T] (bool or 0/1) or undefined decides
/// which windows have wake logits and, under loss_free, which rows of a window sleep; the
/// loss_free schedule requires it. Gradients flow through every pass and window unless
/// `backprop.truncate_every` says otherwise. `plans`, when given, are plan_windows of the same
/// mask made on the host already: the loop then never reads the device (a CUDA graph capture may
/// not); otherwise the mask is read back once. `wake` says whether the logits are computed or only
/// the hidden states the head reads.
WindowLoopOutput run_windows(nn::HybridLM& model, const at::Tensor& tokens,
                             const at::Tensor& loss_mask, memory::ModelMemory memory,
                             const SleepOptions& sleep, const BackpropOptions& backprop = {},
                             const std::vector<WindowPlan>& plans = {},
                             WakeOutput wake = WakeOutput::kLogits);

}  // namespace hypnos::sleep
