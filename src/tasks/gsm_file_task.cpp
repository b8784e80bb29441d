// GsmFileTask: the file's problems through gsm_layout. The vocabulary starts as the generated
// task's (same options, same shipped lists), so ids agree with a from-scratch gsm_infinite run.
#include "hypnos/tasks/gsm_file_task.h"

#include "hypnos/tasks/gsm_infinite_generator.h"

namespace hypnos::tasks {

size_t file_record(Split split, uint64_t index, const EpochOrder& order, const std::string& path) {
  if (split == Split::kTrain) return order.record(index);
  const size_t n = order.size();
  if (index >= n) {
    throw std::out_of_range("test example " + std::to_string(index) + " of " + path +
                            ": the file " + "holds " + std::to_string(n) +
                            " problems (set train.eval_examples <= " + std::to_string(n) + ")");
  }
  return static_cast<size_t>(index);
}

GsmFileTask::GsmFileTask(const GsmInfiniteOptions& options, uint64_t seed)
    : options_(options), tokenizer_(GsmInfiniteTask(options, seed).tokenizer()) {
  GsmOfficialData data = read_gsm_official_jsonl(options.data_file);
  problems_ = std::move(data.problems);
  dropped_ = data.dropped;
  if (problems_.empty()) {
    throw std::invalid_argument("task.data_file = " + options.data_file + ": all " +
                                std::to_string(dropped_) +
                                " problems were dropped (answers not integers in 0..1000)");
  }
  if (options.vocab_extend) {
    std::vector<std::string> texts;
    for (const GsmProblem& p : problems_) {
      texts.push_back(p.question);
      texts.push_back(p.problem);
    }
    tokenizer_.extend(texts);
  }
  train_order_ = std::make_unique<EpochOrder>(problems_.size(), seed, options.shuffle);
}

const GsmProblem& GsmFileTask::problem(Split split, uint64_t index) const {
  return problems_[file_record(split, index, *train_order_, options_.data_file)];
}

Example GsmFileTask::example(Split split, uint64_t index) const {
  try {
    return gsm_layout(problem(split, index), tokenizer_, options_.max_len);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(
        options_.data_file + ": problem " +
        std::to_string(file_record(split, index, *train_order_, options_.data_file)) + ": " +
        e.what());
  }
}

}  // namespace hypnos::tasks
