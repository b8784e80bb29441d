// TokenFileTask: the index decides everything; the task only turns a record into an Example.
#include "hypnos/tasks/token_file_task.h"

#include <nlohmann/json.hpp>

#include "hypnos/tasks/gsm_file_task.h"

namespace hypnos::tasks {
namespace {

std::string required_tokenizer(const GsmInfiniteOptions& options) {
  if (options.tokenizer.empty()) {
    throw std::invalid_argument("task.token_file = " + options.token_file +
                                " needs task.tokenizer (the folder of the tokenizer.json it was "
                                "written with) or model.from");
  }
  return options.tokenizer;
}

}  // namespace

TokenFileTask::TokenFileTask(const GsmInfiniteOptions& options, uint64_t /*seed*/)
    : options_(options),
      vocab_(TokenizerVocab::load(required_tokenizer(options))),
      file_(options.token_file, vocab_.size()) {
  file_.check_tokenizer(options.tokenizer);
}

const TokenRecord& TokenFileTask::record(Split split, uint64_t index) const {
  return file_.records()[file_record(split, index, file_.records().size(), options_.token_file)];
}

Example TokenFileTask::example(Split split, uint64_t index) const {
  const size_t r = file_record(split, index, file_.records().size(), options_.token_file);
  const TokenRecord& rec = file_.records()[r];
  Example ex;
  ex.tokens = file_.tokens(r);
  ex.targets.assign(ex.tokens.begin() + 1, ex.tokens.end());
  ex.targets.push_back(file_.pad_id());
  ex.loss_mask.assign(rec.length, 0);
  ScoreGroup group{"op=" + std::to_string(rec.op), {}, {}};
  // Position i predicts token i + 1: the answer tokens are the targets of the positions before.
  for (int64_t i = rec.answer_start - 1; i < rec.answer_start + rec.answer_length - 1; ++i) {
    ex.loss_mask[i] = 1;
    group.positions.push_back(i);
  }
  if (!rec.mode.empty()) group.tags.push_back("mode=" + rec.mode);
  if (!rec.template_name.empty()) group.tags.push_back("template=" + rec.template_name);
  ex.groups.push_back(std::move(group));
  nlohmann::ordered_json fields;
  fields["id"] = rec.id;
  fields["answer"] = rec.answer;
  fields["op"] = rec.op;
  fields["mode"] = rec.mode;
  fields["template"] = rec.template_name;
  fields["d"] = rec.d;
  ex.fields_json = fields.dump();
  return ex;
}

}  // namespace hypnos::tasks
