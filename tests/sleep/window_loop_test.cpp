// The window loop against docs/design.md section 1, one test (or pair) per numbered point, on tiny
// double models and the Rule 110 layout (4 windows of 24 tokens, then a query window of 4).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <atomic>
#include <cstring>

#include "hypnos/sleep/window_loop.h"
#include "hypnos/tasks/batch.h"
#include "hypnos/tasks/depo.h"
#include "nn/tiny_model.h"
#include "sleep/algorithm_port.h"
#include "testing/cuda.h"
#include "testing/numeric.h"

namespace hypnos::sleep {
namespace {

using memory::ModelMemory;
using testing::PortOptions;
using testing::relative_error;

PortOptions port_opts(int64_t rows, int64_t seq_len, int64_t passes, int64_t window = 24) {
  PortOptions o;
  o.window = window;
  o.passes = passes;
  o.sleeps = testing::every_evicted_window(rows, seq_len, window);
  return o;
}

SleepOptions sleep_opts(int64_t n_passes, int64_t window = 24) {
  SleepOptions o;
  o.n_passes = n_passes;
  o.window = window;
  return o;
}

at::Tensor masked_loss(const at::Tensor& logits, const at::Tensor& targets,
                       const at::Tensor& mask) {
  const auto lp = at::log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  return -(lp * mask.to(lp.scalar_type())).sum() / mask.sum();
}

std::vector<at::Tensor> grads_of(nn::HybridLM& m, const at::Tensor& loss) {
  std::vector<at::Tensor> params = m->parameters();
  auto g = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/false,
                                 /*create_graph=*/false, /*allow_unused=*/true);
  for (size_t i = 0; i < g.size(); ++i) {
    if (!g[i].defined()) g[i] = at::zeros_like(params[i]);
  }
  return g;
}

double max_relative_error(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, relative_error(a[i], b[i]));
  return worst;
}

const at::Tensor kNoMask;

}  // namespace

// ---- 1. N = 1 is the plain hybrid ---------------------------------------------------------------

TEST(SleepLoop, SinglePassEqualsPlainHybrid) {
  nn::HybridLM m = testing::tiny_model("AGAG", 10, 6);
  const auto tokens = testing::rule110_tokens(2, 1);
  const auto out = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), sleep_opts(1));
  const auto ref = testing::port_sleep_loop(m, tokens, port_opts(2, 100, 1));
  EXPECT_LT(relative_error(out.logits, ref.logits), 1e-14);
  for (int64_t row : {0, 1}) {
    EXPECT_LT(
        relative_error(out.memory.layers[1].state.narrow(0, row, 1), ref.memory[row][1].state),
        1e-14);
  }
}

// ---- 2. passes 2..N on evicted windows; evicted == loss_free on the paper's layout -------------

// Every window's logits are compared, not only the last: windows 0-3 both sleep and have wake
// logits, which must be the first pass's (a loop that took them from pass N fails here).
TEST(SleepLoop, EvictedScheduleMatchesTheAlgorithmInEveryWindow) {
  nn::HybridLM m = testing::tiny_model("AGAG", 11, 6);
  const auto tokens = testing::rule110_tokens(2, 2);
  for (int64_t n : {2, 3}) {
    const auto out = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), sleep_opts(n));
    const auto ref = testing::port_sleep_loop(m, tokens, port_opts(2, 100, n));
    EXPECT_LT(relative_error(out.logits, ref.logits), 1e-13) << "N = " << n;
    for (int64_t row : {0, 1}) {
      EXPECT_LT(
          relative_error(out.memory.layers[3].state.narrow(0, row, 1), ref.memory[row][3].state),
          1e-13)
          << "N = " << n;
    }
    // Sleeping changes the answer: N is not 1 in the windows after the first.
    const auto plain = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), sleep_opts(1));
    EXPECT_TRUE(out.logits.narrow(1, 0, 24).equal(plain.logits.narrow(1, 0, 24)));
    EXPECT_GT(relative_error(out.logits.narrow(1, 24, 76), plain.logits.narrow(1, 24, 76)), 1e-6);
  }
}

TEST(SleepLoop, EvictedAndLossFreeSchedulesGiveIdenticalLossesAndGradients) {
  nn::HybridLM m = testing::tiny_model("AGAG", 12, 6);
  const auto tokens = testing::rule110_tokens(3, 3);
  const auto mask = testing::rule110_loss_mask(3);
  const auto targets = at::randint(0, 2, {3, 100}, at::TensorOptions().dtype(at::kLong));
  SleepOptions evicted = sleep_opts(3), loss_free = sleep_opts(3);
  loss_free.schedule = Schedule::kLossFree;
  const auto a = run_windows(m, tokens, mask, ModelMemory::empty(4), evicted);
  const auto b = run_windows(m, tokens, mask, ModelMemory::empty(4), loss_free);
  const auto loss_a = masked_loss(a.logits, targets, mask);
  const auto loss_b = masked_loss(b.logits, targets, mask);
  EXPECT_EQ(loss_a.item<double>(), loss_b.item<double>());
  EXPECT_LT(max_relative_error(grads_of(m, loss_a), grads_of(m, loss_b)), 1e-14);
}

// The same on Depo's layout (left-padded context windows, queries only in the last window), the
// other task where the two schedules must coincide.
TEST(SleepLoop, EvictedAndLossFreeSchedulesGiveIdenticalLossesAndGradientsOnDepo) {
  const tasks::DepoTask task(tasks::DepoOptions{}, 5);
  const tasks::Batch batch = tasks::make_batch(task, tasks::Split::kTrain, 0, 3);
  nn::HybridLM m = testing::tiny_model("AGJG", 27, task.vocab_size());
  SleepOptions evicted = sleep_opts(2, 75), loss_free = sleep_opts(2, 75);
  loss_free.schedule = Schedule::kLossFree;
  const auto plans_a = plan_windows(batch.loss_mask, task.seq_len(), evicted);
  const auto plans_b = plan_windows(batch.loss_mask, task.seq_len(), loss_free);
  EXPECT_TRUE(plans_a == plans_b);
  const auto a = run_windows(m, batch.tokens, batch.loss_mask, ModelMemory::empty(4), evicted);
  const auto b = run_windows(m, batch.tokens, batch.loss_mask, ModelMemory::empty(4), loss_free);
  const auto loss_a = masked_loss(a.logits, batch.targets, batch.loss_mask);
  const auto loss_b = masked_loss(b.logits, batch.targets, batch.loss_mask);
  EXPECT_EQ(loss_a.item<double>(), loss_b.item<double>());
  EXPECT_LT(max_relative_error(grads_of(m, loss_a), grads_of(m, loss_b)), 1e-14);
}

// ---- 3. thread vs restart -----------------------------------------------------------------------

TEST(SleepLoop, ThreadAndRestartEachMatchTheAlgorithm) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("AGAG", 13, 6);
  const auto tokens = testing::rule110_tokens(2, 4);
  SleepOptions thread = sleep_opts(3), restart = sleep_opts(3);
  restart.state_between_passes = StateBetweenPasses::kRestart;
  const auto a = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), thread);
  const auto b = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), restart);
  PortOptions port_thread = port_opts(2, 100, 3), port_restart = port_thread;
  port_restart.restart = true;
  const auto ref_a = testing::port_sleep_loop(m, tokens, port_thread);
  const auto ref_b = testing::port_sleep_loop(m, tokens, port_restart);
  EXPECT_LT(relative_error(a.logits, ref_a.logits), 1e-13);
  EXPECT_LT(relative_error(b.logits, ref_b.logits), 1e-13);
  EXPECT_GT(relative_error(a.logits.narrow(1, 96, 4), b.logits.narrow(1, 96, 4)), 1e-6);
}

TEST(SleepLoop, RestartKeepsOnlyTheLastPassState) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("AGAG", 14, 6);
  const auto tokens = testing::rule110_tokens(2, 5).narrow(1, 0, 24);
  const auto no_loss = at::zeros({2, 24}, at::TensorOptions().dtype(at::kBool));
  SleepOptions restart = sleep_opts(3);  // one loss-free window sleeps under loss_free
  restart.schedule = Schedule::kLossFree;
  restart.state_between_passes = StateBetweenPasses::kRestart;
  const auto out = run_windows(m, tokens, no_loss, ModelMemory::empty(4), restart);
  // Passes 1 and 2 only shape h; pass 3 writes S from the window-start (zero) state.
  at::Tensor h = m->embed(tokens);
  ModelMemory written;
  for (int p = 0; p < 3; ++p)
    std::tie(h, written) = m->forward_blocks(h, ModelMemory::empty(4), 0, 4);
  for (int64_t i : {1, 3}) EXPECT_TRUE(out.memory.layers[i].state.equal(written.layers[i].state));
  restart.state_between_passes = StateBetweenPasses::kThread;
  const auto thread = run_windows(m, tokens, no_loss, ModelMemory::empty(4), restart);
  EXPECT_GT(relative_error(thread.memory.layers[1].state, written.layers[1].state), 1e-6);
}

// ---- 4. loop_layers [a, b)
// -----------------------------------------------------------------------

TEST(SleepLoop, LoopLayersRunPrefixAndSuffixBlocksOnce) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("GGGG", 15, 6);
  const auto tokens = testing::rule110_tokens(2, 6).narrow(1, 0, 24);
  const auto no_loss = at::zeros({2, 24}, at::TensorOptions().dtype(at::kBool));
  SleepOptions o = sleep_opts(3);
  o.schedule = Schedule::kLossFree;
  o.loop_layers = {1, 3};
  const auto out = run_windows(m, tokens, no_loss, ModelMemory::empty(4), o);
  at::Tensor h;
  ModelMemory mem;
  std::tie(h, mem) = m->forward_blocks(m->embed(tokens), ModelMemory::empty(4), 0, 1);
  for (int p = 0; p < 3; ++p) {
    // Each pass threads S but convolves from the window-start (empty) conv cache, as the
    // reference's zero-padded Conv1d does on every pass.
    for (int64_t i : {1, 2}) mem.layers[i].conv = at::Tensor();
    std::tie(h, mem) = m->forward_blocks(h, mem, 1, 3);
  }
  std::tie(h, mem) = m->forward_blocks(h, mem, 3, 4);
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_TRUE(out.memory.layers[i].state.equal(mem.layers[i].state)) << i;
  // Block 0 ran once: its state is the plain single-pass one.
  const auto plain = run_windows(m, tokens, no_loss, ModelMemory::empty(4), sleep_opts(1));
  EXPECT_TRUE(out.memory.layers[0].state.equal(plain.memory.layers[0].state));
  EXPECT_FALSE(out.memory.layers[1].state.equal(plain.memory.layers[1].state));
}

TEST(SleepLoop, PartialLoopTakesWakeLogitsFromAnOrdinaryPass) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("GGGG", 16, 6);
  const auto tokens = testing::rule110_tokens(2, 7).narrow(1, 0, 48);
  SleepOptions o = sleep_opts(3);
  o.loop_layers = {1, 3};
  const auto looped = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), o);
  const auto plain = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), sleep_opts(1));
  // Window 0 sleeps and has wake logits: they are the single pass's, from the window-start state.
  EXPECT_TRUE(looped.logits.narrow(1, 0, 24).equal(plain.logits.narrow(1, 0, 24)));
  // Window 1 starts from the consolidated state, so it differs.
  EXPECT_GT(relative_error(looped.logits.narrow(1, 24, 24), plain.logits.narrow(1, 24, 24)), 1e-6);
}

// A window that both holds loss tokens and sleeps, with a partial loop: its wake logits come from
// an ordinary pass and consolidation starts again from the window-start memory. A loop that let
// the wake pass's state writes into consolidation fails here (the memory and every later window).
TEST(SleepLoop, PartialLoopOnALossWindowConsolidatesFromTheWindowStart) {
  nn::HybridLM m = testing::tiny_model("AGJG", 24, 6);
  const auto tokens = testing::rule110_tokens(2, 12).narrow(1, 0, 72);
  for (int64_t n : {2, 3}) {
    SleepOptions o = sleep_opts(n);
    o.loop_layers = {1, 3};
    const auto out = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), o);
    PortOptions p = port_opts(2, 72, n);
    p.loop_begin = 1;
    p.loop_end = 3;
    const auto ref = testing::port_sleep_loop(m, tokens, p);
    EXPECT_LT(relative_error(out.logits, ref.logits), 1e-13) << "N = " << n;
    for (int64_t row : {0, 1}) {
      for (int64_t i : {1, 2, 3}) {
        EXPECT_LT(
            relative_error(out.memory.layers[i].state.narrow(0, row, 1), ref.memory[row][i].state),
            1e-13)
            << "N = " << n << ", layer " << i;
      }
    }
  }
}

// ---- 5 & 6. eviction: what attention can reach
// ---------------------------------------------------

TEST(SleepLoop, HardEvictionHidesEvictedTokensFromAttentionButNotFromState) {
  torch::NoGradGuard no_grad;
  const auto tokens = testing::rule110_tokens(2, 8);
  auto perturbed = tokens.clone();
  perturbed.narrow(1, 0, 96).fill_(1);
  for (const char* pattern : {"AAAA", "AGAG"}) {
    nn::HybridLM m = testing::tiny_model(pattern, 17, 6);
    const auto a = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), sleep_opts(3));
    const auto b = run_windows(m, perturbed, kNoMask, ModelMemory::empty(4), sleep_opts(3));
    const auto qa = a.logits.narrow(1, 96, 4), qb = b.logits.narrow(1, 96, 4);
    if (std::string(pattern) == "AAAA") {
      EXPECT_TRUE(qa.equal(qb)) << "attention-only query logits must not see evicted tokens";
    } else {
      EXPECT_GT(relative_error(qa, qb), 1e-6) << "the hybrid carries evicted tokens in S";
    }
  }
}

TEST(SleepLoop, SlidingEvictionSeesExactlyWindowMinusOneTokensBack) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("A", 18, 8);
  const int64_t L = 4;
  SleepOptions o = sleep_opts(1, L);
  o.eviction = memory::Eviction::kSliding;
  const auto tokens = at::randint(0, 8, {1, 12}, at::TensorOptions().dtype(at::kLong));
  const auto base = run_windows(m, tokens, kNoMask, ModelMemory::empty(1), o).logits;
  auto changed = [&](int64_t position, int64_t query) {
    auto t = tokens.clone();
    t[0][position] = (t[0][position].item<int64_t>() + 1) % 8;
    const auto l = run_windows(m, t, kNoMask, ModelMemory::empty(1), o).logits;
    return !l.select(1, query).equal(base.select(1, query));
  };
  EXPECT_TRUE(changed(5, 8));  // 3 = L-1 back, in the previous window: visible
  EXPECT_TRUE(changed(7, 8));
  EXPECT_FALSE(changed(4, 8));   // L back: not visible
  EXPECT_FALSE(changed(7, 11));  // previous window, L back from the last query
  EXPECT_TRUE(changed(8, 11));
  o.eviction = memory::Eviction::kHard;  // and hard eviction hides the previous window entirely
  const auto hard = run_windows(m, tokens, kNoMask, ModelMemory::empty(1), o).logits;
  auto t = tokens.clone();
  t[0][7] = (t[0][7].item<int64_t>() + 1) % 8;
  EXPECT_TRUE(run_windows(m, t, kNoMask, ModelMemory::empty(1), o)
                  .logits.select(1, 8)
                  .equal(hard.select(1, 8)));
}

// Sliding eviction with N > 1: the retained keys/values are those of the last pass, every pass
// attends from the window-start caches, and the short-conv caches cross the boundary.
TEST(SleepLoop, SlidingEvictionWithSeveralPassesMatchesTheAlgorithm) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("AGJA", 25, 8);
  const auto tokens = at::randint(0, 8, {2, 22}, at::TensorOptions().dtype(at::kLong));
  for (bool partial : {false, true}) {
    SleepOptions o = sleep_opts(3, 5);
    o.eviction = memory::Eviction::kSliding;
    PortOptions p = port_opts(2, 22, 3, 5);
    p.sliding = true;
    if (partial) {
      o.loop_layers = {1, 3};
      p.loop_begin = 1;
      p.loop_end = 3;
    }
    const auto out = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), o);
    const auto ref = testing::port_sleep_loop(m, tokens, p);
    EXPECT_LT(relative_error(out.logits, ref.logits), 1e-13) << "partial " << partial;
    for (int64_t row : {0, 1}) {
      for (int64_t i = 0; i < 4; ++i) {
        const memory::LayerMemory& got = out.memory.layers[i];
        const testing::PortLayer& want = ref.memory[row][i];
        auto same = [&](const at::Tensor& a, const at::Tensor& b, const char* slot) {
          ASSERT_EQ(a.defined(), b.defined()) << slot << " of layer " << i;
          if (a.defined()) {
            EXPECT_LT(relative_error(a.narrow(0, row, 1), b), 1e-13)
                << slot << " of layer " << i << ", partial " << partial;
          }
        };
        same(got.key, want.key, "key");
        same(got.value, want.value, "value");
        same(got.state, want.state, "state");
        same(got.conv, want.conv, "conv");
      }
    }
  }
}

// After a hard-evicted window only S remains: the memory holds no other slot, and the next
// window's logits are a function of S alone (a fresh memory holding copies of S gives them).
TEST(SleepLoop, OnlyTheStateCrossesAHardEvictedWindow) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("AGJG", 26, 6);
  const auto tokens = testing::rule110_tokens(2, 13);
  const auto mask = testing::rule110_loss_mask(2);
  // loss_free: the four string windows sleep whether or not the query window follows them.
  SleepOptions o = sleep_opts(2);
  o.schedule = Schedule::kLossFree;
  const auto whole = run_windows(m, tokens, mask, ModelMemory::empty(4), o);
  const auto head =
      run_windows(m, tokens.narrow(1, 0, 96), mask.narrow(1, 0, 96), ModelMemory::empty(4), o);
  ModelMemory only_state = ModelMemory::empty(4);
  for (int64_t i = 0; i < 4; ++i) {
    const memory::LayerMemory& l = head.memory.layers[i];
    EXPECT_FALSE(l.key.defined() || l.value.defined() || l.conv.defined()) << "layer " << i;
    EXPECT_EQ(l.state.defined(), i != 0) << "layer " << i;  // block 0 is attention: no S
    if (l.state.defined()) only_state.layers[i].state = l.state.clone();
  }
  const auto query = tokens.narrow(1, 96, 4), query_mask = mask.narrow(1, 96, 4);
  const auto tail = run_windows(m, query, query_mask, only_state, o);
  EXPECT_TRUE(tail.logits.equal(whole.logits.narrow(1, 96, 4)));
  only_state.layers[2].state = only_state.layers[2].state * 0.5;  // and S does matter
  const auto changed = run_windows(m, query, query_mask, only_state, o);
  EXPECT_GT(relative_error(changed.logits, tail.logits), 1e-6);
}

// ---- 7. gradients: full BPTT, truncation, window recompute --------------------------------------

TEST(SleepLoop, LastWindowLossReachesWindowZeroOnlyThroughState) {
  // Window 0 holds ids 6 and 7, which occur nowhere else: their embedding rows' gradient is the
  // gradient with respect to window 0's embeddings.
  auto tokens = testing::rule110_tokens(2, 9);
  tokens.narrow(1, 0, 24).add_(6);
  const auto mask = testing::rule110_loss_mask(2);
  const auto targets = at::randint(0, 2, {2, 100}, at::TensorOptions().dtype(at::kLong));
  auto window0_grad = [&](const char* pattern, int64_t truncate_every) {
    nn::HybridLM m = testing::tiny_model(pattern, 19, 8);
    BackpropOptions bp;
    bp.truncate_every = truncate_every;
    const auto out = run_windows(m, tokens, mask, ModelMemory::empty(4), sleep_opts(2), bp);
    const auto g = torch::autograd::grad({masked_loss(out.logits, targets, mask)},
                                         {m->embed_tokens->weight})[0];
    return g.narrow(0, 6, 2).abs().max().item<double>();
  };
  EXPECT_GT(window0_grad("AGAG", 0), 1e-8);  // the hybrid: through S
  EXPECT_EQ(window0_grad("AAAA", 0), 0.0);   // no S, nothing crosses the boundary
  EXPECT_EQ(window0_grad("AGAG", 1), 0.0);   // truncation cuts the path through S
  EXPECT_EQ(window0_grad("AGAG", 4), 0.0);   // cut after window 4 (windows 0..3 behind it)
  EXPECT_GT(window0_grad("AGAG", 5), 1e-8);  // no cut before the query window
}

TEST(SleepLoop, GradientsThroughPassesAndWindowsMatchCentralDifferences) {
  nn::HybridLM m = testing::tiny_model("AGJG", 20, 8);
  const auto tokens = at::randint(0, 8, {1, 10}, at::TensorOptions().dtype(at::kLong));
  SleepOptions o = sleep_opts(2, 4);
  o.eviction = memory::Eviction::kSliding;
  auto f = [&](const std::vector<at::Tensor>& s) {
    ModelMemory mem = ModelMemory::empty(4);
    mem.layers[1].state = s[0];
    mem.layers[2].state = s[1];
    const auto out = run_windows(m, tokens, kNoMask, mem, o);
    return out.logits.pow(2).sum() + out.memory.layers[3].state.sum();
  };
  const auto s1 = at::randn({1, 2, 8, 8}, at::kDouble), s2 = at::randn({1, 2, 8, 8}, at::kDouble);
  for (double err : testing::gradient_check_errors(f, {s1, s2}, 1e-6, 6)) EXPECT_LT(err, 1e-6);
}

namespace {

/// Counts the bytes held by CPU tensors and their peak: LibTorch's CPU allocator replaced by one
/// that prefixes each block with its size (the data pointer must double as the deleter context).
class PeakCountingAllocator : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    auto* base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
    *reinterpret_cast<size_t*>(base) = n;
    void* data = base + kHeader;
    add(static_cast<int64_t>(n));
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }
  void reset_peak() { peak_ = current_.load(); }
  int64_t peak() const { return peak_; }
  int64_t current() const { return current_; }
  static PeakCountingAllocator& instance() {
    static PeakCountingAllocator a;
    return a;
  }

 private:
  static constexpr size_t kHeader = 64;  // keeps the data 64-byte aligned
  void add(int64_t n) {
    const int64_t now = current_ += n;
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
  }
  static void release(void* data) {
    char* base = static_cast<char*>(data) - kHeader;
    instance().current_ -= static_cast<int64_t>(*reinterpret_cast<size_t*>(base));
    c10::free_cpu(base);
  }
  std::atomic<int64_t> current_{0}, peak_{0};
};

}  // namespace

TEST(SleepLoop, WindowRecomputeGivesSameGradientsWithLowerPeakMemory) {
  torch::manual_seed(21);
  nn::ModelOptions mo;
  mo.vocab_size = 6;
  mo.d_model = 32;
  nn::HybridLM m(mo);  // float32, the training dtype
  const auto tokens = testing::rule110_tokens(4, 10);
  const auto mask = testing::rule110_loss_mask(4);
  const auto targets = at::randint(0, 2, {4, 100}, at::TensorOptions().dtype(at::kLong));
  c10::Allocator* original = c10::GetCPUAllocator();
  PeakCountingAllocator& counting = PeakCountingAllocator::instance();
  c10::SetCPUAllocator(&counting, /*priority=*/255);
  auto step = [&](Recompute recompute, int64_t* peak_bytes) {
    BackpropOptions bp;
    bp.recompute = recompute;
    counting.reset_peak();
    const int64_t before = counting.current();
    const auto out = run_windows(m, tokens, mask, ModelMemory::empty(4), sleep_opts(2), bp);
    auto g = grads_of(m, masked_loss(out.logits, targets, mask));
    *peak_bytes = counting.peak() - before;
    return g;
  };
  int64_t peak_none = 0, peak_window = 0, peak_block = 0;
  const auto g_none = step(Recompute::kNone, &peak_none);
  const auto g_window = step(Recompute::kWindow, &peak_window);
  const auto g_block = step(Recompute::kBlock, &peak_block);
  c10::SetCPUAllocator(original, /*priority=*/255);
  EXPECT_LE(max_relative_error(g_window, g_none), 1e-6);
  EXPECT_LE(max_relative_error(g_block, g_none), 1e-6);
  EXPECT_LT(peak_window, peak_none);
  EXPECT_LT(peak_block, peak_window);  // the replayed window keeps block inputs only
  std::printf(
      "[ peak memory ] forward+backward, d=32 AGAG B=4 T=100 N=2: recompute none %.2f MiB, "
      "window %.2f MiB, block %.2f MiB\n",
      peak_none / 1048576.0, peak_window / 1048576.0, peak_block / 1048576.0);
  RecordProperty("peak_bytes_recompute_none", std::to_string(peak_none));
  RecordProperty("peak_bytes_recompute_window", std::to_string(peak_window));
  RecordProperty("peak_bytes_recompute_block", std::to_string(peak_block));
}

TEST(SleepLoop, WindowRecomputeMatchesWithSlidingMemoryPartialLoopAndTruncation) {
  // Retained KV and conv caches cross the checkpoint too; a partial loop adds the separate wake
  // pass.
  nn::HybridLM m = testing::tiny_model("AGJA", 23, 8);
  const auto tokens = at::randint(0, 8, {2, 22}, at::TensorOptions().dtype(at::kLong));
  const auto mask = at::rand({2, 22}) < 0.3;
  const auto targets = at::randint(0, 8, {2, 22}, at::TensorOptions().dtype(at::kLong));
  SleepOptions o = sleep_opts(3, 5);
  o.eviction = memory::Eviction::kSliding;
  o.loop_layers = {1, 3};
  BackpropOptions plain, recompute;
  plain.truncate_every = recompute.truncate_every = 2;
  recompute.recompute = Recompute::kWindow;
  const auto a = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), o, plain);
  const auto b = run_windows(m, tokens, kNoMask, ModelMemory::empty(4), o, recompute);
  EXPECT_TRUE(a.logits.equal(b.logits));
  EXPECT_LE(max_relative_error(grads_of(m, masked_loss(a.logits, targets, mask)),
                               grads_of(m, masked_loss(b.logits, targets, mask))),
            1e-12);
}

TEST(SleepLoop, BlockRecomputeGivesTheGradientsOfNoRecompute) {
  // N = 3 over a partial loop [1, 3) with sliding memory (retained keys/values and conv caches
  // enter and leave each block checkpoint), loss in several windows, truncation every 2 windows.
  // fp32 (the training dtype) and double.
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    nn::HybridLM m = testing::tiny_model("AGJA", 29, 8);
    m->to(dtype);
    const auto tokens = at::randint(0, 8, {2, 22}, at::TensorOptions().dtype(at::kLong));
    const auto mask = at::rand({2, 22}) < 0.3;
    const auto targets = at::randint(0, 8, {2, 22}, at::TensorOptions().dtype(at::kLong));
    SleepOptions o = sleep_opts(3, 5);
    o.eviction = memory::Eviction::kSliding;
    o.loop_layers = {1, 3};
    std::vector<std::vector<at::Tensor>> grads;
    std::vector<at::Tensor> logits;
    for (const auto recompute : {Recompute::kNone, Recompute::kWindow, Recompute::kBlock}) {
      BackpropOptions bp;
      bp.truncate_every = 2;
      bp.recompute = recompute;
      const auto out = run_windows(m, tokens, mask, ModelMemory::empty(4), o, bp);
      logits.push_back(out.logits);
      grads.push_back(grads_of(m, masked_loss(out.logits, targets, mask)));
    }
    // The forward is the same ops on the same values; the gradients are the same products summed
    // in another order (a weight used by 3 passes in 5 windows gets its gradient per checkpoint
    // replay and summed there, not by the engine in one graph): fp32 round-off, a few ulps.
    const double tolerance = dtype == at::kFloat ? 1e-5 : 1e-12;
    EXPECT_TRUE(logits[2].equal(logits[0])) << dtype;
    EXPECT_LE(max_relative_error(grads[1], grads[0]), tolerance) << dtype;
    EXPECT_LE(max_relative_error(grads[2], grads[0]), tolerance) << dtype;
    std::printf("[ block recompute ] %s: max relative gradient difference to none %.3g\n",
                c10::toString(dtype), max_relative_error(grads[2], grads[0]));
  }
}

TEST(SleepLoop, BlockRecomputeWithLoopNormAndLossFreeRows) {
  // loop_norm closes the stack with the final norm inside the last block's checkpoint; loss_free
  // mixes per-row plans into the replayed windows.
  torch::manual_seed(31);
  nn::ModelOptions mo;
  mo.vocab_size = 8;
  mo.d_model = 16;
  mo.n_heads = 2;
  mo.pattern = "GAG";
  mo.loop_norm = true;
  nn::HybridLM m(mo);
  m->to(at::kDouble);
  const auto tokens = at::randint(0, 8, {3, 18}, at::TensorOptions().dtype(at::kLong));
  auto mask = at::zeros({3, 18}, at::TensorOptions().dtype(at::kBool));
  mask.index_put_({0, 16}, true);
  mask.index_put_({1, 7}, true);
  mask.index_put_({2, 12}, true);
  const auto targets = at::randint(0, 8, {3, 18}, at::TensorOptions().dtype(at::kLong));
  SleepOptions o = sleep_opts(2, 6);
  o.schedule = Schedule::kLossFree;
  BackpropOptions none, block;
  block.recompute = Recompute::kBlock;
  const auto a = run_windows(m, tokens, mask, ModelMemory::empty(3), o, none);
  const auto b = run_windows(m, tokens, mask, ModelMemory::empty(3), o, block);
  EXPECT_TRUE(a.logits.equal(b.logits));
  EXPECT_LE(max_relative_error(grads_of(m, masked_loss(a.logits, targets, mask)),
                               grads_of(m, masked_loss(b.logits, targets, mask))),
            1e-12);
}

// ---- options ------------------------------------------------------------------------------------

TEST(SleepOptions, ValidationNamesKeyAndValue) {
  SleepOptions o;
  o.loop_layers = {3, 2};
  try {
    o.validate(4);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sleep.loop_layers = [3, 2]"), std::string::npos)
        << e.what();
  }
  o.loop_layers = {1, 5};
  EXPECT_THROW(o.validate(4), std::invalid_argument);
  o.loop_layers = {1, 4};
  EXPECT_NO_THROW(o.validate(4));
}

TEST(SleepLoop, LossFreeScheduleRequiresALossMask) {
  nn::HybridLM m = testing::tiny_model("AG", 22, 6);
  SleepOptions o = sleep_opts(2);
  o.schedule = Schedule::kLossFree;
  EXPECT_THROW(run_windows(m, at::zeros({1, 30}, at::kLong), kNoMask, ModelMemory::empty(2), o),
               c10::Error);
}

// ---- on the GPU (skips without one) -------------------------------------------------------------

// The Rule 110 paper model's window loop (AGAG, width 256, N = 2) on the GPU gives its CPU copy's
// query logits: the CUDA kernels of every layer together, in fp32 without TF32.
TEST(SleepLoopCuda, PaperModelOnTheGpuMatchesItsCpuCopy) {
  HYPNOS_REQUIRE_CUDA();
  const testing::ExactFp32 exact;
  torch::manual_seed(0);
  nn::ModelOptions mo;
  mo.vocab_size = 6;
  nn::HybridLM cpu(mo);
  nn::HybridLM gpu = std::dynamic_pointer_cast<nn::HybridLMImpl>(cpu->clone(at::kCUDA));
  const auto tokens = testing::rule110_tokens(8, 11);
  const auto mask = testing::rule110_loss_mask(8);
  torch::NoGradGuard no_grad;
  const auto want = run_windows(cpu, tokens, mask, ModelMemory::empty(4), sleep_opts(2)).logits;
  const auto got = run_windows(gpu, tokens.to(at::kCUDA), mask.to(at::kCUDA), ModelMemory::empty(4),
                               sleep_opts(2))
                       .logits;
  EXPECT_LT(relative_error(got.narrow(1, 96, 4), want.narrow(1, 96, 4)), 1e-3);
}

}  // namespace hypnos::sleep
