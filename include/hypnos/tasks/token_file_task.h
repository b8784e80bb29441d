// Problems tokenised by a pretrained model's own tokenizer (task.token_file, docs/tasks.md 3.5):
// each record is one example of its own length, scored on its answer span.
#pragma once
#include <cstdint>
#include <string>

#include "hypnos/tasks/task.h"
#include "hypnos/tasks/task_options.h"
#include "hypnos/tasks/token_file.h"
#include "hypnos/tasks/tokenizer_vocab.h"

namespace hypnos::tasks {

class TokenFileTask : public Task {
 public:
  /// Loads the tokenizer of options.tokenizer (required: set it, or model.from, which a run's
  /// config loader copies into it), opens options.token_file with ids checked against the
  /// tokenizer's vocabulary, and checks the tokenizer's SHA-256 against the index.
  TokenFileTask(const GsmInfiniteOptions& options, uint64_t seed);

  std::string_view name() const override { return "gsm_infinite"; }
  int64_t vocab_size() const override { return vocab_.size(); }
  /// The longest record (batches are padded to their own longest).
  int64_t seq_len() const override { return file_.max_length(); }
  int64_t pad_id() const override { return file_.pad_id(); }
  /// Record (split, index) (file_record): tokens = the record, targets = tokens shifted by one,
  /// loss_mask = 1 where the target is an answer token; one group "op=<op>" tagged with mode and
  /// template; fields id, answer, op, mode, template, d.
  Example example(Split split, uint64_t index) const override;
  std::string token_name(int64_t id) const override { return vocab_.decode({id}, false); }

  const TokenRecord& record(Split split, uint64_t index) const;
  const TokenFile& file() const { return file_; }
  const TokenizerVocab& vocab() const { return vocab_; }

 private:
  GsmInfiniteOptions options_;
  TokenizerVocab vocab_;
  TokenFile file_;
};

}  // namespace hypnos::tasks
