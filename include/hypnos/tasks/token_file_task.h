// Problems tokenised by a pretrained model's own tokenizer (task.token_file, docs/tasks.md 3.5):
// each record is one example of its own length, scored on its answer span.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "hypnos/tasks/epoch_order.h"
#include "hypnos/tasks/task.h"
#include "hypnos/tasks/task_options.h"
#include "hypnos/tasks/token_file.h"
#include "hypnos/tasks/tokenizer_vocab.h"

namespace hypnos::tasks {

class TokenFileTask : public Task {
 public:
  /// Loads the tokenizer of options.tokenizer (required: set it, or model.from, which a run's
  /// config loader copies into it), opens options.token_file (and options.eval_token_file when
  /// set) with ids checked against the tokenizer's vocabulary, and checks the tokenizer's SHA-256
  /// against each index. A token file that does not exist is a std::invalid_argument naming its
  /// key (a config's placeholder path, before anything else is read).
  TokenFileTask(const GsmInfiniteOptions& options, uint64_t seed);

  std::string_view name() const override { return "gsm_infinite"; }
  int64_t vocab_size() const override { return vocab_.size(); }
  /// The longest record of either file (batches are padded to their own longest).
  int64_t seq_len() const override;
  int64_t pad_id() const override { return file_.pad_id(); }
  /// The records of task.token_file.
  int64_t train_size() const override { return static_cast<int64_t>(file_.records().size()); }
  /// The records of file(Split::kTest).
  int64_t test_size() const override {
    return static_cast<int64_t>(file(Split::kTest).records().size());
  }
  /// Record (split, index) (file_record over file(split)): tokens = the record, targets = tokens
  /// shifted by one,
  /// loss_mask = 1 where the target is an answer token; one group "op=<op>" tagged with mode and
  /// template; fields id, answer, op, mode, template, d.
  Example example(Split split, uint64_t index) const override;
  int64_t example_length(Split split, uint64_t index) const override {
    return record(split, index).length;
  }
  std::string token_name(int64_t id) const override { return vocab_.decode({id}, false); }

  const TokenRecord& record(Split split, uint64_t index) const;
  /// The file a split reads: training always task.token_file; the test split task.eval_token_file
  /// when set (held-out problems), else the same file.
  const TokenFile& file(Split split = Split::kTrain) const;
  const TokenizerVocab& vocab() const { return vocab_; }

 private:
  /// The key that names file(split), for error messages.
  const std::string& path(Split split) const;

  /// The order of file(split)'s records: the training file's epochs (task.shuffle), or the test
  /// file's own order.
  const EpochOrder& order(Split split) const;

  GsmInfiniteOptions options_;
  TokenizerVocab vocab_;
  TokenFile file_;
  std::optional<TokenFile> eval_file_;
  std::unique_ptr<EpochOrder> train_order_, eval_order_;
};

}  // namespace hypnos::tasks
