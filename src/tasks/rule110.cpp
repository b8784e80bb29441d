// Rule 110 generator and layout (docs/tasks.md section 1). Integer-only, so examples are
// bit-identical on every platform.
#include "hypnos/tasks/rule110.h"

#include <nlohmann/json.hpp>

#include "tasks/tagged.h"

namespace hypnos::tasks {
namespace {

using detail::tagged;

}  // namespace

std::vector<uint8_t> rule110_step(const std::vector<uint8_t>& cells, Rule110Boundary boundary) {
  const size_t w = cells.size();
  std::vector<uint8_t> next(w);
  for (size_t j = 0; j < w; ++j) {
    const bool periodic = boundary == Rule110Boundary::kPeriodic;
    const int left = j > 0 ? cells[j - 1] : (periodic ? cells[w - 1] : 0);
    const int right = j + 1 < w ? cells[j + 1] : (periodic ? cells[0] : 0);
    next[j] = (110 >> (4 * left + 2 * cells[j] + right)) & 1;
  }
  return next;
}

Rule110Task::Rule110Task(const Rule110Options& options, uint64_t seed)
    : options_(options), seed_(seed) {
  if (options.n_states < 1 || options.n_states > 64) {
    throw std::invalid_argument("task.n_states = " + std::to_string(options.n_states) +
                                ": expected 1..64");
  }
  if (options.width < 3) {
    throw std::invalid_argument("task.width = " + std::to_string(options.width) +
                                ": expected at least 3 cells");
  }
  if (options.t < 0) {
    throw std::invalid_argument("task.t = " + std::to_string(options.t) + ": expected >= 0");
  }
}

Example Rule110Task::example(Split split, uint64_t index) const {
  Stream stream(seed_, name(), split, index);
  std::vector<uint8_t> cells(options_.n_states * options_.width);
  for (auto& c : cells) c = static_cast<uint8_t>(stream.below(2));
  return layout(cells);
}

Example Rule110Task::layout(const std::vector<uint8_t>& cells) const {
  const int64_t n = options_.n_states, w = options_.width, n_cells = n * w;
  if (static_cast<int64_t>(cells.size()) != n_cells) {
    throw std::invalid_argument("Rule110Task::layout: got " + std::to_string(cells.size()) +
                                " cells, expected n_states * width = " + std::to_string(n_cells));
  }
  Example ex;
  ex.tokens.assign(cells.begin(), cells.end());
  ex.targets.assign(seq_len(), 0);  // unscored positions: Rule 110 has no PAD
  ex.loss_mask.assign(seq_len(), 0);
  ScoreGroup group;
  group.bucket = "t=" + std::to_string(options_.t);
  nlohmann::json states = nlohmann::json::array(), labels = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<uint8_t> s(cells.begin() + i * w, cells.begin() + (i + 1) * w);
    std::string text;
    for (uint8_t c : s) text.push_back(static_cast<char>('0' + c));
    for (int64_t step = 0; step < options_.t; ++step) s = rule110_step(s, options_.boundary);
    const int64_t pos = n_cells + i;
    ex.tokens.push_back(2 + i);
    ex.targets[pos] = s[0];
    ex.loss_mask[pos] = 1;
    group.positions.push_back(pos);
    states.push_back(text);
    labels.push_back(s[0]);
  }
  ex.groups.push_back(std::move(group));
  nlohmann::ordered_json fields;
  fields["states"] = states;
  fields["t"] = options_.t;
  // Every option that decides the labels, so that a record can be checked on its own.
  fields["boundary"] =
      config::EnumNames<Rule110Boundary>::names[static_cast<size_t>(options_.boundary)];
  fields["labels"] = labels;
  ex.fields_json = fields.dump();
  return ex;
}

std::string Rule110Task::token_name(int64_t id) const {
  if (id == 0 || id == 1) return std::to_string(id);
  if (id >= 2 && id < vocab_size()) return tagged("Q", id - 2);
  return tagged("<", id, "?>");
}

}  // namespace hypnos::tasks
