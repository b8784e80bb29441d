// make_task: the one place that maps a `task:` config section to a Task.
#include "hypnos/tasks/task_options.h"

#include "hypnos/tasks/depo.h"
#include "hypnos/tasks/gsm_file_task.h"
#include "hypnos/tasks/gsm_infinite_generator.h"
#include "hypnos/tasks/rule110.h"
#include "hypnos/tasks/token_file_task.h"

namespace hypnos::tasks {

std::unique_ptr<Task> make_task(const TaskOptions& options, uint64_t seed) {
  switch (options.name) {
    case TaskName::kRule110:
      return std::make_unique<Rule110Task>(options.rule110, seed);
    case TaskName::kDepo:
      return std::make_unique<DepoTask>(options.depo, seed);
    case TaskName::kGsmInfinite:
      // Problems come from the generator, a text file (word-level) or a token file (the model's
      // own tokenizer), never two of them.
      if (!options.gsm.data_file.empty() && !options.gsm.token_file.empty()) {
        throw std::invalid_argument("task.data_file = " + options.gsm.data_file +
                                    " and task.token_file = " + options.gsm.token_file +
                                    ": set one of them");
      }
      if (!options.gsm.eval_token_file.empty() && options.gsm.token_file.empty()) {
        throw std::invalid_argument("task.eval_token_file = " + options.gsm.eval_token_file +
                                    " needs task.token_file (the training problems)");
      }
      if (!options.gsm.token_file.empty()) {
        return std::make_unique<TokenFileTask>(options.gsm, seed);
      }
      if (!options.gsm.data_file.empty()) return std::make_unique<GsmFileTask>(options.gsm, seed);
      return std::make_unique<GsmInfiniteTask>(options.gsm, seed);
  }
  throw std::invalid_argument("task.name = " + std::to_string(static_cast<int>(options.name)) +
                              ": expected rule110 | depo | gsm_infinite");
}

}  // namespace hypnos::tasks
