// The window loop (docs/design.md section 1), read top to bottom: run_windows walks the windows and
// handles truncation and recompute; sleep_window is one window's wake pass, sleep passes and
// eviction. WindowRecompute is the activation checkpoint that replays sleep_window in backward.
#include "hypnos/sleep/window_loop.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <array>

namespace hypnos::sleep {

void SleepOptions::validate(int64_t n_layers) const {
  auto fail = [](const std::string& key, const std::string& value, const std::string& expected) {
    throw std::invalid_argument("sleep." + key + " = " + value + ": expected " + expected);
  };
  if (n_passes < 1) fail("n_passes", std::to_string(n_passes), ">= 1");
  if (window < 1) fail("window", std::to_string(window), ">= 1");
  if (!loop_layers.empty()) {
    std::string v = "[";
    for (size_t i = 0; i < loop_layers.size(); ++i) {
      v += (i ? ", " : "") + std::to_string(loop_layers[i]);
    }
    v += "]";
    if (loop_layers.size() != 2 || loop_layers[0] < 0 || loop_layers[0] >= loop_layers[1] ||
        loop_layers[1] > n_layers) {
      fail("loop_layers", v,
           "empty (all blocks) or [a, b) with 0 <= a < b <= " + std::to_string(n_layers));
    }
  }
}

namespace {

/// forward_blocks, or with `checkpoint` (train.recompute = block, in grad mode) each block call
/// behind BlockRecompute (defined below, with the window checkpoint).
std::pair<at::Tensor, memory::ModelMemory> run_blocks(nn::HybridLM& model, const at::Tensor& h,
                                                      const memory::ModelMemory& memory,
                                                      int64_t begin, int64_t end, int64_t span,
                                                      bool checkpoint);

/// The memory pass p of blocks [a, b) reads: KV and conv caches always from the window start (a
/// pass attends over its own keys plus the retained ones), S from the previous pass (thread) or
/// from the window start (restart).
memory::ModelMemory pass_input(const memory::ModelMemory& previous,
                               const memory::ModelMemory& start, int64_t a, int64_t b,
                               StateBetweenPasses mode) {
  memory::ModelMemory in = previous;
  for (int64_t i = a; i < b; ++i) {
    in.layers[i] = start.layers[i];
    if (mode == StateBetweenPasses::kThread) in.layers[i].state = previous.layers[i].state;
  }
  return in;
}

}  // namespace

/// One window: embed once; wake pass; N-1 more passes if it sleeps; evict.
WindowResult sleep_window(nn::HybridLM& model, const at::Tensor& tokens,
                          const memory::ModelMemory& start, const WindowPlan& plan,
                          const SleepOptions& opts, const at::Tensor& loss_rows,
                          bool checkpoint_blocks) {
  TORCH_CHECK(!plan.per_row || (plan.sleeps && plan.wants_logits && loss_rows.defined()),
              "sleep_window: a per-row plan sleeps, wants logits and needs the loss rows");
  const int64_t n = model->n_layers();
  const int64_t a = opts.loop_layers.empty() ? 0 : opts.loop_layers[0];
  const int64_t b = opts.loop_layers.empty() ? n : opts.loop_layers[1];
  const int64_t span = opts.eviction == memory::Eviction::kSliding ? opts.window : 0;
  const at::Tensor h0 = model->embed(tokens);  // h0: [B, L, D]
  WindowResult result;

  if (!plan.sleeps) {  // a plain single pass: wake logits and its memory
    auto [h, written] = run_blocks(model, h0, start, 0, n, span, checkpoint_blocks);
    if (plan.wants_logits) result.hidden = h;
    result.memory = memory::evict(written, opts.eviction, opts.window);
    return result;
  }

  const bool full_range = a == 0 && b == n;
  memory::ModelMemory single;  // per-row plans: the memory one ordinary pass leaves
  auto [h, written] = run_blocks(model, h0, start, 0, a, span, checkpoint_blocks);  // prefix, once
  if (plan.wants_logits && !full_range) {
    // docs/design.md 1.4: with a partial loop the wake logits come from an ordinary pass whose
    // state writes are dropped; consolidation below starts again from the window-start memory. The
    // prefix is that pass's first part too (`written` holds `start` at layers [a, n)).
    auto [h_wake, wake_written] = run_blocks(model, h, written, a, n, span, checkpoint_blocks);
    result.hidden = h_wake;
    if (plan.per_row) single = std::move(wake_written);
  }
  for (int64_t pass = 1; pass <= opts.n_passes; ++pass) {
    const memory::ModelMemory in = pass_input(written, start, a, b, opts.state_between_passes);
    std::tie(h, written) = run_blocks(model, h, in, a, b, span, checkpoint_blocks);
    if (pass == 1 && full_range) {  // the wake pass: its logits, and the one-pass memory
      if (plan.wants_logits) result.hidden = h;
      if (plan.per_row) single = written;
    }
  }
  std::tie(h, written) =
      run_blocks(model, h, written, b, n, span, checkpoint_blocks);    // suffix, once
  result.memory = memory::evict(written, opts.eviction, opts.window);  // h is discarded
  if (plan.per_row) {
    // docs/design.md 1.2, loss_free: rows with loss tokens here ran one pass, the others slept;
    // rows without loss tokens have no wake logits, as when they are alone in their batch.
    result.memory = memory::select_rows(
        loss_rows, memory::evict(single, opts.eviction, opts.window), result.memory);
    result.hidden = at::where(loss_rows.view({-1, 1, 1}), result.hidden,
                              at::zeros({}, result.hidden.options()));
  }
  return result;
}

std::vector<WindowPlan> plan_windows(const at::Tensor& loss_mask, int64_t seq_len,
                                     const SleepOptions& sleep) {
  const int64_t L = sleep.window, n_windows = (seq_len + L - 1) / L;
  // rows_with_loss[b][w]: row b holds a loss token in window w (all true without a mask).
  at::Tensor any_row, all_rows;  // [n_windows] bool
  if (loss_mask.defined()) {
    TORCH_CHECK(loss_mask.is_cpu() && loss_mask.dim() == 2 && loss_mask.size(1) == seq_len,
                "plan_windows: the loss mask must be [B, T = ", seq_len, "] on the CPU, got ",
                loss_mask.sizes(), " on ", loss_mask.device());
    at::Tensor padded =
        at::zeros({loss_mask.size(0), n_windows * L}, at::TensorOptions().dtype(at::kBool));
    padded.narrow(1, 0, seq_len).copy_(loss_mask.to(at::kBool));
    const at::Tensor rows_with_loss = padded.view({loss_mask.size(0), n_windows, L}).any(2);
    any_row = rows_with_loss.any(0).contiguous();
    all_rows = rows_with_loss.all(0).contiguous();
  }
  std::vector<WindowPlan> plans(static_cast<size_t>(n_windows));
  for (int64_t w = 0; w < n_windows; ++w) {
    const bool some = !any_row.defined() || any_row.data_ptr<bool>()[w];
    const bool every = !all_rows.defined() || all_rows.data_ptr<bool>()[w];
    WindowPlan& plan = plans[static_cast<size_t>(w)];
    plan.wants_logits = some;
    if (sleep.n_passes == 1) continue;
    if (sleep.schedule == Schedule::kEvicted) {
      plan.sleeps = w + 1 < n_windows;
    } else {  // loss_free, per example: the window sleeps unless every row has loss tokens in it
      plan.sleeps = !every;
      plan.per_row = some && !every;
    }
  }
  return plans;
}

namespace {

/// The CUDA autocast state of a forward: backward runs with autocast off (autograd's thread state),
/// so a replay re-enters it, or bf16 training would get the gradients of an fp32 replay.
struct Autocast {
  bool enabled = false;
  at::ScalarType dtype = at::kBFloat16;
  static Autocast current() {
    return {at::autocast::is_autocast_enabled(at::kCUDA),
            at::autocast::get_autocast_dtype(at::kCUDA)};
  }
};

/// Everything WindowRecompute needs besides the tensors autograd tracks.
struct WindowCall : torch::CustomClassHolder {
  nn::HybridLM model{nullptr};
  std::vector<at::Tensor> params;  // model->parameters(), collected once per run_windows
  at::Tensor tokens;
  at::Tensor loss_rows;  // [B] bool, per-row plans only
  WindowPlan plan;
  SleepOptions opts;
  std::vector<std::string> in_names;   // names of the memory tensors passed in
  std::vector<std::string> out_names;  // names of the memory tensors returned (set by forward)
  bool checkpoint_blocks = false;      // train.recompute = block: each block call checkpointed
  Autocast autocast;
};

/// Sets CUDA autocast as the forward had it for the replay's lifetime (torch.utils.checkpoint does
/// the same), then restores the backward's state and drops the casts cached meanwhile.
class ReplayAutocast {
 public:
  explicit ReplayAutocast(const Autocast& forward)
      : enabled_(at::autocast::is_autocast_enabled(at::kCUDA)),
        dtype_(at::autocast::get_autocast_dtype(at::kCUDA)) {
    at::autocast::set_autocast_dtype(at::kCUDA, forward.dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, forward.enabled);
  }
  ~ReplayAutocast() {
    at::autocast::set_autocast_enabled(at::kCUDA, enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype_);
    if (!enabled_) at::autocast::clear_cache();
  }
  ReplayAutocast(const ReplayAutocast&) = delete;
  ReplayAutocast& operator=(const ReplayAutocast&) = delete;

 private:
  bool enabled_;
  at::ScalarType dtype_;
};

memory::ModelMemory rebuild(const WindowCall& call, const std::vector<std::string>& names,
                            const torch::autograd::variable_list& tensors, size_t offset) {
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (size_t i = 0; i < names.size(); ++i) named.emplace_back(names[i], tensors[offset + i]);
  return memory::ModelMemory::from_named(call.model->n_layers(), named);
}

torch::autograd::variable_list flatten(const WindowResult& r, std::vector<std::string>* names) {
  torch::autograd::variable_list out;
  if (r.hidden.defined()) out.push_back(r.hidden);
  names->clear();
  for (auto& [name, t] : r.memory.named_tensors()) {
    names->push_back(name);
    out.push_back(t);
  }
  return out;
}

/// The backward of a checkpoint: backpropagates `grad_out` through the replayed `outputs` to the
/// replay's `inputs` (the saved tensors, then the parameters); one more undefined gradient for the
/// call argument of the autograd Function.
torch::autograd::variable_list backprop_replay(const torch::autograd::variable_list& outputs,
                                               const torch::autograd::variable_list& grad_out,
                                               const torch::autograd::variable_list& inputs) {
  torch::autograd::variable_list ys, gys, xs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (grad_out[i].defined() && outputs[i].requires_grad()) {
      ys.push_back(outputs[i]);
      gys.push_back(grad_out[i]);
    }
  }
  std::vector<size_t> wanted;  // inputs the replay can differentiate
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].requires_grad()) {
      wanted.push_back(i);
      xs.push_back(inputs[i]);
    }
  }
  torch::autograd::variable_list grads(inputs.size() + 1);  // + the call argument
  if (ys.empty() || xs.empty()) return grads;
  const auto dx = torch::autograd::grad(ys, xs, gys, /*retain_graph=*/false,
                                        /*create_graph=*/false, /*allow_unused=*/true);
  for (size_t j = 0; j < wanted.size(); ++j) grads[wanted[j]] = dx[j];
  return grads;
}

/// Everything BlockRecompute needs besides the tensors autograd tracks.
struct BlockCall : torch::CustomClassHolder {
  nn::HybridLM model{nullptr};
  int64_t index = 0;  // the block
  int64_t span = 0;
  std::vector<at::Tensor> params;  // the block's (and the final norm's when it closes the stack)
  std::array<bool, 4> in_defined{}, out_defined{};  // which LayerMemory fields are passed
  Autocast autocast;
};

std::array<at::Tensor*, 4> fields(memory::LayerMemory& layer) {
  return {&layer.key, &layer.value, &layer.state, &layer.conv};
}

/// One block call of forward_blocks, as inputs -> outputs of tensors: h and the block's memory
/// fields in, its output and written fields out.
torch::autograd::variable_list run_block(BlockCall& call, const torch::autograd::variable_list& in,
                                         bool record_outputs) {
  memory::ModelMemory memory = memory::ModelMemory::empty(call.model->n_layers());
  size_t k = 1;
  auto in_fields = fields(memory.layers[static_cast<size_t>(call.index)]);
  for (size_t f = 0; f < 4; ++f) {
    if (call.in_defined[f]) *in_fields[f] = in[k++];
  }
  auto [y, written] =
      call.model->forward_blocks(in[0], memory, call.index, call.index + 1, call.span);
  torch::autograd::variable_list out{y};
  auto out_fields = fields(written.layers[static_cast<size_t>(call.index)]);
  for (size_t f = 0; f < 4; ++f) {
    if (record_outputs) call.out_defined[f] = out_fields[f]->defined();
    if (out_fields[f]->defined()) out.push_back(*out_fields[f]);
  }
  return out;
}

/// Activation checkpointing per block (train.recompute = block, inside the window replay): forward
/// runs the block without a graph and keeps only its inputs (h and the block's memory); backward
/// runs it again with a graph and backpropagates through it. Blocks are deterministic (no dropout,
/// no sampling), so the second run computes the same values.
struct BlockRecompute : torch::autograd::Function<BlockRecompute> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                at::TensorList in, at::TensorList params,
                                                c10::intrusive_ptr<BlockCall> call) {
    ctx->save_for_backward(in.vec());
    ctx->saved_data["call"] = c10::IValue::make_capsule(call);
    return run_block(*call, in.vec(), /*record_outputs=*/true);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto call = c10::static_intrusive_pointer_cast<BlockCall>(ctx->saved_data["call"].toCapsule());
    torch::autograd::variable_list inputs;
    for (const at::Tensor& t : ctx->get_saved_variables()) {
      inputs.push_back(t.detach().requires_grad_(t.is_floating_point()));
    }
    const size_t n_in = inputs.size();
    for (const at::Tensor& p : call->params) inputs.push_back(p);
    torch::autograd::variable_list outputs;
    {
      torch::AutoGradMode grad_mode(true);
      ReplayAutocast autocast(call->autocast);
      outputs =
          run_block(*call, torch::autograd::variable_list(inputs.begin(), inputs.begin() + n_in),
                    /*record_outputs=*/false);
    }
    return backprop_replay(outputs, grad_out, inputs);
  }
};

std::pair<at::Tensor, memory::ModelMemory> run_blocks(nn::HybridLM& model, const at::Tensor& h,
                                                      const memory::ModelMemory& memory,
                                                      int64_t begin, int64_t end, int64_t span,
                                                      bool checkpoint) {
  if (!checkpoint || !at::GradMode::is_enabled()) {
    return model->forward_blocks(h, memory, begin, end, span);
  }
  memory::ModelMemory written = memory;
  at::Tensor x = h;
  for (int64_t i = begin; i < end; ++i) {
    auto call = c10::make_intrusive<BlockCall>();
    call->model = model;
    call->index = i;
    call->span = span;
    call->autocast = Autocast::current();
    call->params = model->block(i).parameters();
    if (model->options.loop_norm && i + 1 == model->n_layers()) {  // the call ends with the norm
      for (const auto& p : model->norm->parameters()) call->params.push_back(p);
    }
    memory::LayerMemory layer = memory.layers[static_cast<size_t>(i)];
    std::vector<at::Tensor> in{x};
    const auto in_fields = fields(layer);
    for (size_t f = 0; f < 4; ++f) {
      call->in_defined[f] = in_fields[f]->defined();
      if (call->in_defined[f]) in.push_back(*in_fields[f]);
    }
    // TensorList, not std::vector: only ArrayRefs of tensors are seen as autograd inputs.
    const auto out = BlockRecompute::apply(at::TensorList(in), at::TensorList(call->params), call);
    x = out[0];
    memory::LayerMemory out_layer;
    const auto out_fields = fields(out_layer);
    for (size_t f = 0, k = 1; f < 4; ++f) {
      if (call->out_defined[f]) *out_fields[f] = out[k++];
    }
    written.layers[static_cast<size_t>(i)] = std::move(out_layer);
  }
  return {x, std::move(written)};
}

/// Activation checkpointing along the window axis: forward runs sleep_window without a graph and
/// keeps only its inputs; backward replays it with a graph and backpropagates through the replay.
/// The parameters are explicit inputs, so their gradients flow as ordinary input gradients (no
/// reentrant accumulation) and a window with no differentiable memory still reaches them.
struct WindowRecompute : torch::autograd::Function<WindowRecompute> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                at::TensorList memory_in, at::TensorList params,
                                                c10::intrusive_ptr<WindowCall> call) {
    ctx->save_for_backward(memory_in.vec());
    ctx->saved_data["call"] = c10::IValue::make_capsule(call);
    const memory::ModelMemory start = rebuild(*call, call->in_names, memory_in.vec(), 0);
    return flatten(sleep_window(call->model, call->tokens, start, call->plan, call->opts,
                                call->loss_rows, call->checkpoint_blocks),
                   &call->out_names);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto call = c10::static_intrusive_pointer_cast<WindowCall>(ctx->saved_data["call"].toCapsule());
    torch::autograd::variable_list inputs;
    for (const at::Tensor& t : ctx->get_saved_variables()) {
      inputs.push_back(t.detach().requires_grad_(t.is_floating_point()));
    }
    for (const at::Tensor& p : call->params) inputs.push_back(p);
    torch::autograd::variable_list outputs;
    {
      torch::AutoGradMode grad_mode(true);
      ReplayAutocast autocast(call->autocast);
      std::vector<std::string> names;
      outputs =
          flatten(sleep_window(call->model, call->tokens, rebuild(*call, call->in_names, inputs, 0),
                               call->plan, call->opts, call->loss_rows, call->checkpoint_blocks),
                  &names);
    }
    return backprop_replay(outputs, grad_out, inputs);
  }
};

/// Per window outputs ([B, L_w, C], undefined for windows without loss tokens) into one [B, T, C]
/// tensor, zeros where undefined, in the dtype of the computed ones (bf16 under autocast: fp32
/// zeros would promote the whole output to fp32).
at::Tensor concat_windows(std::vector<at::Tensor>& windows, int64_t B, int64_t T, int64_t L,
                          int64_t C, at::TensorOptions options) {
  for (const auto& x : windows) {
    if (x.defined()) options = x.options();
  }
  for (size_t w = 0; w < windows.size(); ++w) {
    if (windows[w].defined()) continue;
    windows[w] = at::zeros({B, std::min(L, T - static_cast<int64_t>(w) * L), C}, options);
  }
  return at::cat(windows, 1);
}

}  // namespace

WindowLoopOutput run_windows(nn::HybridLM& model, const at::Tensor& tokens,
                             const at::Tensor& loss_mask, memory::ModelMemory memory,
                             const SleepOptions& sleep, const BackpropOptions& backprop,
                             const std::vector<WindowPlan>& given_plans, WakeOutput wake) {
  sleep.validate(model->n_layers());
  TORCH_CHECK(tokens.dim() == 2, "run_windows: tokens must be [B, T], got ", tokens.sizes());
  TORCH_CHECK(!loss_mask.defined() || loss_mask.sizes() == tokens.sizes(),
              "run_windows: loss_mask must be [B, T] like tokens ", tokens.sizes(), ", got ",
              loss_mask.sizes());
  TORCH_CHECK(sleep.schedule != Schedule::kLossFree || loss_mask.defined(),
              "run_windows: sleep.schedule = loss_free needs a loss mask");
  TORCH_CHECK(static_cast<int64_t>(memory.layers.size()) == model->n_layers(),
              "run_windows: memory has ", memory.layers.size(), " layers, the model ",
              model->n_layers());
  if (backprop.truncate_every < 0) {
    throw std::invalid_argument(
        "train.truncate_every = " + std::to_string(backprop.truncate_every) + ": expected >= 0");
  }
  const int64_t T = tokens.size(1), L = sleep.window;
  const int64_t n_windows = (T + L - 1) / L;
  // The plans are made on the host, from the mask read back once: asking the device per window
  // would synchronise with it once per window on the training hot path.
  TORCH_CHECK(given_plans.empty() || static_cast<int64_t>(given_plans.size()) == n_windows,
              "run_windows: ", given_plans.size(), " window plans given for ", n_windows,
              " windows (T = ", T, ", L = ", L, ")");
  const std::vector<WindowPlan> plans =
      !given_plans.empty()
          ? given_plans
          : plan_windows(loss_mask.defined() ? loss_mask.cpu() : at::Tensor(), T, sleep);
  // Per window: [B, L_w, D] and [B, L_w, vocab]; undefined without loss tokens.
  std::vector<at::Tensor> hidden, logits;
  // The window checkpoint passes the parameters explicitly; other runs never need the list.
  const std::vector<at::Tensor> params =
      backprop.recompute != Recompute::kNone ? model->parameters() : std::vector<at::Tensor>{};
  for (int64_t w = 0; w < n_windows; ++w) {
    const int64_t begin = w * L, len = std::min(L, T - begin);
    const at::Tensor window_tokens = tokens.narrow(1, begin, len);
    // 1. Plan: does this window sleep, are its wake logits needed, and which rows hold loss tokens
    // when the rows disagree (read on the device: no host synchronisation).
    const WindowPlan& plan = plans[static_cast<size_t>(w)];
    TORCH_CHECK(!plan.per_row || loss_mask.defined(),
                "run_windows: a per-row window plan needs a loss_mask");
    const at::Tensor loss_rows =
        plan.per_row ? loss_mask.narrow(1, begin, len).to(at::kBool).any(1) : at::Tensor();
    // 2. Run it, directly or behind the window checkpoint.
    WindowResult result;
    if (backprop.recompute != Recompute::kNone && at::GradMode::is_enabled()) {
      auto call = c10::make_intrusive<WindowCall>();
      call->model = model;
      call->params = params;
      call->tokens = window_tokens;
      call->autocast = Autocast::current();
      call->checkpoint_blocks = backprop.recompute == Recompute::kBlock;
      call->plan = plan;
      call->loss_rows = loss_rows;
      call->opts = sleep;
      std::vector<at::Tensor> memory_in;
      for (auto& [name, t] : memory.named_tensors()) {
        call->in_names.push_back(name);
        memory_in.push_back(t);
      }
      // TensorList, not std::vector: only ArrayRefs of tensors are seen as autograd inputs.
      const auto outputs =
          WindowRecompute::apply(at::TensorList(memory_in), at::TensorList(params), call);
      const size_t offset = plan.wants_logits ? 1 : 0;
      if (plan.wants_logits) result.hidden = outputs[0];
      result.memory = rebuild(*call, call->out_names, outputs, offset);
    } else {
      result = sleep_window(model, window_tokens, memory, plan, sleep, loss_rows);
    }
    // 3. Hand over: S (and sliding caches) cross the boundary; truncation cuts the graph there.
    memory = std::move(result.memory);
    if (backprop.truncate_every > 0 && (w + 1) % backprop.truncate_every == 0) {
      memory = memory.detached();
    }
    // 4. The head, per window (only windows with loss tokens pay for it), unless the caller runs
    // it itself where it needs logits.
    if (wake == WakeOutput::kLogits && result.hidden.defined()) {
      at::Tensor l = model->logits(result.hidden);
      if (plan.per_row) l = at::where(loss_rows.view({-1, 1, 1}), l, at::zeros({}, l.options()));
      logits.push_back(l);
    } else {
      logits.emplace_back();
    }
    hidden.push_back(result.hidden);
  }
  const at::TensorOptions options = model->head_weight().options();
  WindowLoopOutput out;
  if (wake == WakeOutput::kLogits) {
    out.logits = concat_windows(logits, tokens.size(0), T, L, model->options.vocab_size, options);
  }
  out.hidden = concat_windows(hidden, tokens.size(0), T, L, model->options.d_model, options);
  out.memory = std::move(memory);
  return out;
}

}  // namespace hypnos::sleep
