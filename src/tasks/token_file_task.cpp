// TokenFileTask: the index decides everything; the task only turns a record into an Example.
#include "hypnos/tasks/token_file_task.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tasks/gsm_score_group.h"

#include "hypnos/tasks/gsm_file_task.h"

namespace hypnos::tasks {
namespace {

/// A missing token file is named by its key before the tokenizer is read (checked_tokenizer): the
/// pretrained configs hold a placeholder path until the reproduce script or the user sets one.
void check_exists(const std::string& path, const std::string& key) {
  if (!std::filesystem::exists(path)) {
    throw std::invalid_argument(key + " = " + path +
                                ": no such file (write it with scripts/tokenize_gsm.py, or let "
                                "scripts/reproduce_gsm_infinite.sh --model-dir write it)");
  }
}

/// options.tokenizer, once the token files it checks exist.
std::string checked_tokenizer(const GsmInfiniteOptions& options) {
  check_exists(options.token_file, "task.token_file");
  if (!options.eval_token_file.empty())
    check_exists(options.eval_token_file, "task.eval_token_file");
  if (options.tokenizer.empty()) {
    throw std::invalid_argument("task.token_file = " + options.token_file +
                                " needs task.tokenizer (the folder of the tokenizer.json it was "
                                "written with) or model.from");
  }
  return options.tokenizer;
}

}  // namespace

TokenFileTask::TokenFileTask(const GsmInfiniteOptions& options, uint64_t seed)
    : options_(options),
      vocab_(TokenizerVocab::load(checked_tokenizer(options))),
      file_(options.token_file, vocab_.size()) {
  file_.check_tokenizer(options.tokenizer);
  if (!options.eval_token_file.empty()) {
    eval_file_.emplace(options.eval_token_file, vocab_.size());
    eval_file_->check_tokenizer(options.tokenizer);
  }
  // A token file holds at least one record (TokenFile refuses an empty index).
  train_order_ = std::make_unique<EpochOrder>(file_.records().size(), seed, options.shuffle);
  if (eval_file_) {
    eval_order_ = std::make_unique<EpochOrder>(eval_file_->records().size(), seed, false);
  }
}

const EpochOrder& TokenFileTask::order(Split split) const {
  return split == Split::kTest && eval_order_ ? *eval_order_ : *train_order_;
}

int64_t TokenFileTask::seq_len() const {
  return std::max(file_.max_length(), eval_file_ ? eval_file_->max_length() : 0);
}

const TokenFile& TokenFileTask::file(Split split) const {
  return split == Split::kTest && eval_file_ ? *eval_file_ : file_;
}

const std::string& TokenFileTask::path(Split split) const {
  return split == Split::kTest && eval_file_ ? options_.eval_token_file : options_.token_file;
}

const TokenRecord& TokenFileTask::record(Split split, uint64_t index) const {
  const TokenFile& f = file(split);
  return f.records()[file_record(split, index, order(split), path(split))];
}

Example TokenFileTask::example(Split split, uint64_t index) const {
  const TokenFile& f = file(split);
  const size_t r = file_record(split, index, order(split), path(split));
  const TokenRecord& rec = f.records()[r];
  Example ex;
  ex.tokens = f.tokens(r);
  ex.targets.assign(ex.tokens.begin() + 1, ex.tokens.end());
  ex.targets.push_back(f.pad_id());
  ex.loss_mask.assign(rec.length, 0);
  std::vector<int64_t> positions;
  // Position i predicts token i + 1: the answer tokens are the targets of the positions before.
  for (int64_t i = rec.answer_start - 1; i < rec.answer_start + rec.answer_length - 1; ++i) {
    ex.loss_mask[i] = 1;
    positions.push_back(i);
  }
  ex.groups.push_back(
      detail::gsm_score_group(rec.op, rec.mode, rec.template_name, std::move(positions)));
  nlohmann::ordered_json fields;
  fields["id"] = rec.id;
  detail::add_gsm_fields(fields, rec.answer, rec.op, rec.mode, rec.template_name, rec.d);
  ex.fields_json = fields.dump();
  return ex;
}

}  // namespace hypnos::tasks
