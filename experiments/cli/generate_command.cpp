// `hypnos generate TASK`: a task's examples as JSONL on stdout (docs/design.md section 3 fields),
// so that data can be inspected, shared or fed to other tools; task options are overridden under
// `task.`.
#include <iostream>

#include "commands.h"
#include "hypnos/config/visitors.h"
#include "hypnos/tasks/jsonl.h"
#include "hypnos/tasks/task_options.h"

namespace hypnos::cli {
namespace {

struct GenerateConfig {
  tasks::TaskOptions task;
  template <class V>
  void visit(V& v) {
    v.section("task", task);
  }
};

}  // namespace

const CommandSpec& generate_spec() {
  static const CommandSpec spec{
      "generate",
      "print a task's examples as JSONL (tokens, targets, loss_mask and the task's fields)",
      {"TASK"},
      {{"--n", "N", "number of examples (default 10)"},
       {"--split", "SPLIT", "train | test (default test)"},
       {"--seed", "S", "data seed, as run.seed in a config (default 0)"},
       {"--first", "INDEX", "index of the first example (default 0)"}},
      /*takes_overrides=*/true,
      "TASK is rule110, depo or gsm_infinite. Task options are set as task.KEY=VALUE, e.g.\n"
      "  hypnos generate rule110 --n 100 task.t=7\n"
      "Example i of a split is a pure function of (seed, split, i): the same command prints the "
      "same\n"
      "bytes on every machine."};
  return spec;
}

int run_generate(const ParsedArgs& args) {
  std::vector<std::string> overrides{"task.name=" + args.positionals[0]};
  for (const auto& o : args.overrides) {
    if (o.rfind("task.", 0) != 0) {
      throw UsageError("generate takes only task.KEY=VALUE overrides, got '" + o + "'");
    }
    if (o.rfind("task.name=", 0) == 0) throw UsageError("the task is the positional TASK argument");
    overrides.push_back(o);
  }
  const auto config = config::load<GenerateConfig>("", overrides);
  const std::string split_name = args.get("--split", "test");
  if (split_name != "train" && split_name != "test") {
    throw UsageError("--split expects train or test, got '" + split_name + "'");
  }
  const long long n = args.get_int("--n", 10);
  const long long seed = args.get_int("--seed", 0);
  const long long first = args.get_int("--first", 0);
  if (n < 0 || seed < 0 || first < 0) throw UsageError("--n, --seed and --first must be >= 0");
  const auto task = tasks::make_task(config.task, static_cast<uint64_t>(seed));
  const auto split = split_name == "train" ? tasks::Split::kTrain : tasks::Split::kTest;
  tasks::write_jsonl(*task, split, static_cast<uint64_t>(first), n, std::cout);
  std::cout.flush();
  return std::cout ? 0 : 1;
}

}  // namespace hypnos::cli
