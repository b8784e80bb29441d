// GSM-Infinite problems read from a file (task.data_file, docs/tasks.md 3.5) in the word-level
// layout of the generated task, with the generated task's vocabulary (extended by the file's
// words when task.vocab_extend), so models trained on either read the other.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hypnos/tasks/epoch_order.h"
#include "hypnos/tasks/gsm_infinite.h"
#include "hypnos/tasks/gsm_infinite_tokenizer.h"
#include "hypnos/tasks/task.h"
#include "hypnos/tasks/task_options.h"

namespace hypnos::tasks {

/// The record of example (split, index) of the file read from `path`: training reads the records
/// epoch after epoch in `order` (task.shuffle: each epoch in its own seeded order, else the
/// file's); test example i is record i, and i >= the file's records is a std::out_of_range naming
/// the file and its size (an evaluation asking for more examples than the file holds).
size_t file_record(Split split, uint64_t index, const EpochOrder& order, const std::string& path);

class GsmFileTask : public Task {
 public:
  /// Reads options.data_file (read_gsm_official_jsonl: official or `generate --text` lines).
  GsmFileTask(const GsmInfiniteOptions& options, uint64_t seed);

  std::string_view name() const override { return "gsm_infinite"; }
  int64_t vocab_size() const override { return tokenizer_.vocab_size(); }
  int64_t seq_len() const override { return options_.max_len; }
  /// The problems of task.data_file (those dropped aside).
  int64_t train_size() const override { return static_cast<int64_t>(problems_.size()); }
  int64_t test_size() const override { return static_cast<int64_t>(problems_.size()); }
  Example example(Split split, uint64_t index) const override;
  std::string token_name(int64_t id) const override { return tokenizer_.token(id); }

  const GsmProblem& problem(Split split, uint64_t index) const;
  const std::vector<GsmProblem>& problems() const { return problems_; }
  int64_t dropped() const { return dropped_; }

 private:
  GsmInfiniteOptions options_;
  std::vector<GsmProblem> problems_;
  int64_t dropped_ = 0;
  GsmTokenizer tokenizer_;
  std::unique_ptr<EpochOrder> train_order_;
};

}  // namespace hypnos::tasks
