// Rule 110 (docs/tasks.md section 1): n_states random strings, then one query per string asking for
// its first cell after t steps of the elementary cellular automaton 110.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hypnos/tasks/task.h"
#include "hypnos/tasks/task_options.h"

namespace hypnos::tasks {

/// One synchronous step of rule 110: the new cell j is bit (4 left + 2 self + right) of 110.
std::vector<uint8_t> rule110_step(const std::vector<uint8_t>& cells, Rule110Boundary boundary);

/// Token ids: 0/1 = cells, 2 + i = query i. T = n_states * width + n_states.
class Rule110Task : public Task {
 public:
  Rule110Task(const Rule110Options& options, uint64_t seed);

  std::string_view name() const override { return "rule110"; }
  int64_t vocab_size() const override { return 2 + options_.n_states; }
  int64_t seq_len() const override { return options_.n_states * (options_.width + 1); }
  Example example(Split split, uint64_t index) const override;
  std::string token_name(int64_t id) const override;
  /// A label is a bit: predictions are the argmax over the ids 0 and 1 (the metric's definition).
  std::vector<int64_t> answer_ids() const override { return {0, 1}; }

  /// The layout of one example from its cells (n_states * width, in token order).
  Example layout(const std::vector<uint8_t>& cells) const;

 private:
  Rule110Options options_;
  uint64_t seed_;
};

}  // namespace hypnos::tasks
