// `hypnos generate TASK`: a task's examples as JSONL on stdout (docs/design.md section 3 fields),
// so that data can be inspected, shared or fed to other tools; task options are overridden under
// `task.`.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "hypnos/config/visitors.h"
#include "hypnos/tasks/gsm_file_task.h"
#include "hypnos/tasks/gsm_infinite_generator.h"
#include "hypnos/tasks/jsonl.h"
#include "hypnos/tasks/task_options.h"
#include "hypnos/tasks/token_file_task.h"

namespace hypnos::cli {
namespace {

struct GenerateConfig {
  tasks::TaskOptions task;
  template <class V>
  void visit(V& v) {
    v.section("task", task);
  }
};

/// --text: a problem's text record (generated or file task), or a token file's record decoded by
/// the tokenizer's vocabulary.
void write_text(const tasks::Task& task, tasks::Split split, uint64_t first, int64_t n) {
  const std::string prefix = split == tasks::Split::kTrain ? "train/" : "test/";
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t index = first + static_cast<uint64_t>(i);
    if (const auto* gen = dynamic_cast<const tasks::GsmInfiniteTask*>(&task)) {
      std::cout << tasks::gsm_text_jsonl(gen->problem(split, index).problem,
                                         prefix + std::to_string(index))
                << '\n';
    } else if (const auto* file = dynamic_cast<const tasks::GsmFileTask*>(&task)) {
      std::cout << tasks::gsm_text_jsonl(file->problem(split, index),
                                         prefix + std::to_string(index))
                << '\n';
    } else if (const auto* tokens = dynamic_cast<const tasks::TokenFileTask*>(&task)) {
      const tasks::TokenRecord& r = tokens->record(split, index);
      const tasks::TokenFile& file = tokens->file(split);
      const std::vector<int64_t> ids = file.tokens(&r - file.records().data());
      const auto answer_begin = ids.begin() + r.answer_start;
      nlohmann::ordered_json line;
      line["id"] = r.id;
      line["text"] = tokens->vocab().decode(std::vector<int64_t>(ids.begin(), answer_begin));
      line["completion"] = tokens->vocab().decode(
          std::vector<int64_t>(answer_begin, answer_begin + r.answer_length));
      line["answer"] = r.answer;
      line["op"] = r.op;
      line["tokens"] = r.length;
      std::cout << line.dump() << '\n';
    } else {
      throw UsageError("--text is for gsm_infinite (generated, task.data_file or task.token_file)");
    }
  }
}

}  // namespace

const CommandSpec& generate_spec() {
  static const CommandSpec spec{
      "generate",
      "print a task's examples as JSONL (tokens, targets, loss_mask and the task's fields)",
      {"TASK"},
      {{"--n", "N", "number of examples (default 10)"},
       {"--split", "SPLIT", "train | test (default test)"},
       {"--seed", "S", "data seed, as run.seed in a config (default 0)"},
       {"--first", "INDEX", "index of the first example (default 0)"},
       {"--text", "",
        "gsm_infinite: the problems as text (question, problem, answer, prompt, completion), "
        "for scripts/tokenize_gsm.py; with task.token_file, the records decoded"}},
      /*takes_overrides=*/true,
      "TASK is rule110, depo or gsm_infinite. Task options are set as task.KEY=VALUE, e.g.\n"
      "  hypnos generate rule110 --n 100 task.t=7\n"
      "Example i of a split is a pure function of (seed, split, i): the same command prints the "
      "same\n"
      "bytes on every machine.\n"
      "With --text, gsm_infinite problems are written as text records instead (docs/tasks.md "
      "3.5):\n"
      "  hypnos generate gsm_infinite --text --n 1000 >problems.jsonl\n"
      "  .venv/bin/python scripts/tokenize_gsm.py --tokenizer MODEL_DIR --out gsm.tokens "
      "problems.jsonl"};
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
  if (args.has("--text")) {
    write_text(*task, split, static_cast<uint64_t>(first), n);
  } else {
    tasks::write_jsonl(*task, split, static_cast<uint64_t>(first), n, std::cout);
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}

}  // namespace hypnos::cli
