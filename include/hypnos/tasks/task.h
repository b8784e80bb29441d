// The Task interface: a task makes examples (tokens, targets, loss mask, scoring groups) as a pure
// function of (seed, split, index), and scores predictions; it never sees the model
// (docs/design.md 2).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hypnos/tasks/rng.h"

namespace hypnos::tasks {

/// Loss positions scored together: one Rule 110 example (4 labels), one Depo query, one GSM answer.
/// A group is "exact" when every one of its positions is argmax-correct.
struct ScoreGroup {
  std::string bucket;              ///< difficulty bucket, e.g. "t=12", "k=4", "op=6"
  std::vector<int64_t> positions;  ///< indices into the example where loss_mask = 1
  std::vector<std::string> tags;   ///< further buckets it also counts toward, e.g. "mode=reverse"
};

/// One sequence (docs/tasks.md section 0). All vectors have the same length: T = Task::seq_len()
/// for generated tasks, the record's own length (at most seq_len) for token files, whose batches
/// are padded to their longest example (collate).
struct Example {
  std::vector<int64_t> tokens;
  std::vector<int64_t> targets;    ///< scored where loss_mask = 1
  std::vector<uint8_t> loss_mask;  ///< 1 at scored positions
  std::vector<ScoreGroup> groups;  ///< partition of the scored positions
  std::string fields_json;  ///< the task's own JSONL fields as a JSON object (docs/design.md 3)
};

class Task {
 public:
  virtual ~Task() = default;
  /// "rule110" | "depo" | "gsm_infinite" (also the RNG's task name).
  virtual std::string_view name() const = 0;
  virtual int64_t vocab_size() const = 0;
  /// T: every example of this task has exactly this many tokens (padded), or at most this many
  /// (token files: examples of their own lengths).
  virtual int64_t seq_len() const = 0;
  /// The token that pads a batch of shorter examples to its longest (never scored).
  virtual int64_t pad_id() const { return 0; }
  /// Distinct training examples: a file's count (training cycles through it, so one epoch is this
  /// many examples); 0 for generated tasks, whose training data never repeats.
  virtual int64_t train_size() const { return 0; }
  /// Distinct test examples: a file's count (an evaluation reads at most that many); 0 for
  /// generated tasks.
  virtual int64_t test_size() const { return 0; }
  /// Deterministic in (seed, split, index); thread-safe.
  virtual Example example(Split split, uint64_t index) const = 0;
  /// The tokens of example (split, index), known without building it: seq_len() for tasks whose
  /// examples share one length; a token file's record length.
  virtual int64_t example_length(Split /*split*/, uint64_t /*index*/) const { return seq_len(); }
  /// Human-readable form of one token id (for `generate` and debugging).
  virtual std::string token_name(int64_t id) const { return std::to_string(id); }
  /// The ids a prediction is chosen among at scored positions (the metric's argmax runs over
  /// these); empty = the whole vocabulary. The loss is always over the whole vocabulary.
  virtual std::vector<int64_t> answer_ids() const { return {}; }
};

}  // namespace hypnos::tasks
