// make_task: the one place that maps a `task:` config section to a Task.
#include "hypnos/tasks/task_options.h"

#include "hypnos/tasks/depo.h"
#include "hypnos/tasks/gsm_infinite_generator.h"
#include "hypnos/tasks/rule110.h"

namespace hypnos::tasks {

std::unique_ptr<Task> make_task(const TaskOptions& options, uint64_t seed) {
  switch (options.name) {
    case TaskName::kRule110:
      return std::make_unique<Rule110Task>(options.rule110, seed);
    case TaskName::kDepo:
      return std::make_unique<DepoTask>(options.depo, seed);
    case TaskName::kGsmInfinite:
      return std::make_unique<GsmInfiniteTask>(options.gsm, seed);
  }
  throw std::invalid_argument("task.name = " + std::to_string(static_cast<int>(options.name)) +
                              ": expected rule110 | depo | gsm_infinite");
}

}  // namespace hypnos::tasks
