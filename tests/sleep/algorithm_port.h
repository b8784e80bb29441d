// The oracle of the window-loop tests: the sleep algorithm written out from its definition
// (docs/design.md section 1; the paper's Algorithm 1 plus the ablations), one block call at a time.
// It shares only the modules with hypnos (block forwards, embedding, head), never the loop: not
// forward_blocks, not sleep_window, not evict, not the window plans.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "hypnos/nn/hybrid_lm.h"

namespace hypnos::testing {

struct PortOptions {
  int64_t window = 24;
  int64_t passes = 1;
  /// sleeps[b][w]: row b sleeps on window w (one row per example, so "per example" is explicit).
  std::vector<std::vector<bool>> sleeps;
  bool sliding = false;  ///< else hard eviction
  bool restart = false;  ///< every pass starts from the window-start state (else threaded)
  int64_t loop_begin = 0, loop_end = -1;  ///< [a, b); -1 = every block
};

struct PortLayer {
  at::Tensor state, key, value, conv;  ///< undefined = empty
};

struct PortResult {
  at::Tensor logits;  ///< [B, T, vocab]: every window's wake (first-pass) logits
  std::vector<std::vector<PortLayer>> memory;  ///< per row, per layer: after the last window
};

/// Runs each row of `tokens` [B, T] alone, window by window, as the algorithm says.
inline PortResult port_sleep_loop(nn::HybridLM& m, const at::Tensor& tokens, const PortOptions& o) {
  const int64_t n = m->n_layers(), T = tokens.size(1), L = o.window;
  const int64_t a = o.loop_begin, b = o.loop_end < 0 ? n : o.loop_end;
  const int64_t span = o.sliding ? L : 0;
  PortResult result;
  std::vector<at::Tensor> row_logits;
  for (int64_t row = 0; row < tokens.size(0); ++row) {
    std::vector<PortLayer> mem(static_cast<size_t>(n));
    // One block call: the layer reads `in` and returns what it wrote (h through `h`).
    auto call = [&](int64_t i, at::Tensor& h, const PortLayer& in) {
      memory::LayerMemory lm;
      lm.state = in.state;
      lm.key = in.key;
      lm.value = in.value;
      lm.conv = in.conv;
      nn::MixerOutput out = m->block(i).forward(h, lm, span);
      h = out.y;
      return PortLayer{out.written.state, out.written.key, out.written.value, out.written.conv};
    };
    std::vector<at::Tensor> logits;
    for (int64_t c0 = 0, w = 0; c0 < T; c0 += L, ++w) {
      const at::Tensor x = m->embed(tokens.narrow(0, row, 1).narrow(1, c0, std::min(L, T - c0)));
      const std::vector<PortLayer> start = mem;
      // Wake: one ordinary pass from the window-start memory gives the logits.
      std::vector<PortLayer> written(static_cast<size_t>(n));
      at::Tensor h = x;
      for (int64_t i = 0; i < n; ++i) written[i] = call(i, h, start[i]);
      logits.push_back(m->logits(h));
      if (o.sleeps[static_cast<size_t>(row)][static_cast<size_t>(w)] && o.passes > 1) {
        // Sleep: blocks before a once, [a, b) N times (h threaded; S threaded or restarted; the
        // caches of every pass from the window start), blocks from b once; all from the
        // window-start memory, so the wake pass's writes are dropped.
        h = x;
        for (int64_t i = 0; i < a; ++i) written[i] = call(i, h, start[i]);
        std::vector<at::Tensor> S(static_cast<size_t>(n));
        for (int64_t i = a; i < b; ++i) S[i] = start[i].state;
        for (int64_t p = 0; p < o.passes; ++p) {
          for (int64_t i = a; i < b; ++i) {
            PortLayer in = start[i];
            in.state = o.restart ? start[i].state : S[i];
            written[i] = call(i, h, in);
            S[i] = written[i].state;
          }
        }
        for (int64_t i = b; i < n; ++i) written[i] = call(i, h, start[i]);
      }
      // Eviction: S always; sliding keeps the last L-1 keys/values and the conv cache.
      for (int64_t i = 0; i < n; ++i) {
        PortLayer next;
        next.state = written[i].state;
        if (o.sliding) {
          if (written[i].key.defined()) {
            const int64_t keep = std::min<int64_t>(L - 1, written[i].key.size(2));
            next.key = written[i].key.narrow(2, written[i].key.size(2) - keep, keep);
            next.value = written[i].value.narrow(2, written[i].value.size(2) - keep, keep);
          }
          next.conv = written[i].conv;
        }
        mem[i] = next;
      }
    }
    row_logits.push_back(at::cat(logits, 1));
    result.memory.push_back(mem);
  }
  result.logits = at::cat(row_logits, 0);
  return result;
}

/// sleeps[b][w] for every row alike: the evicted schedule (every window but the last).
inline std::vector<std::vector<bool>> every_evicted_window(int64_t rows, int64_t seq_len,
                                                           int64_t window) {
  const int64_t n_windows = (seq_len + window - 1) / window;
  std::vector<bool> one(static_cast<size_t>(n_windows), true);
  one.back() = false;
  return std::vector<std::vector<bool>>(static_cast<size_t>(rows), one);
}

/// sleeps[b][w] per example under loss_free: row b sleeps where it holds no loss token.
inline std::vector<std::vector<bool>> loss_free_windows(const at::Tensor& loss_mask,
                                                        int64_t window) {
  const int64_t T = loss_mask.size(1), n_windows = (T + window - 1) / window;
  std::vector<std::vector<bool>> sleeps;
  for (int64_t row = 0; row < loss_mask.size(0); ++row) {
    std::vector<bool> s;
    for (int64_t w = 0; w < n_windows; ++w) {
      const int64_t c0 = w * window, len = std::min(window, T - c0);
      s.push_back(!loss_mask[row].narrow(0, c0, len).to(at::kBool).any().item<bool>());
    }
    sleeps.push_back(s);
  }
  return sleeps;
}

}  // namespace hypnos::testing
