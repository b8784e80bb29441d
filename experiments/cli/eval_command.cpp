// `hypnos eval RUN_DIR [--step N] [overrides]`: scores a run's newest valid checkpoint (or step N)
// on the task's test split, per difficulty bucket. Overrides change the evaluation, not the run:
// e.g. task.t=16 (another depth) or sleep.n_passes=4 (more sleep at test time); a model key cannot
// change. eval reads the run without its lock and writes into it only its own findings (corrupt
// checkpoints it skipped).
#include <cstdio>
#include <iostream>
#include <set>

#include "commands.h"
#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/io/durable.h"
#include "hypnos/io/jsonl.h"
#include "hypnos/log.h"
#include "hypnos/ops/ops_options.h"
#include "hypnos/tasks/task_options.h"
#include "hypnos/train/checkpoint.h"
#include "hypnos/train/device.h"
#include "hypnos/train/evaluate.h"
#include "hypnos/train/run_config.h"
#include "hypnos/train/run_directory.h"
#include "hypnos/train/training_model.h"

namespace hypnos::cli {

const CommandSpec& eval_spec() {
  static const CommandSpec spec{
      "eval",
      "evaluate a run's checkpoint per difficulty bucket (accuracy and loss)",
      {"RUN_DIR"},
      {{"--step", "N", "evaluate the checkpoint of step N (default: the newest valid one)"},
       {"--device", "DEV", "cpu | cuda (default: run.device of the run)"}},
      /*takes_overrides=*/true,
      "Prints one line per bucket and a final JSON object. Corrupt checkpoints are reported\n"
      "(\"checksum mismatch: <file>\") on stderr and in RUN_DIR/events.jsonl, and skipped.\n"
      "Overrides may change the task, sleep and evaluation keys, not the model (model.*, except\n"
      "the ops keys model.gdn_backend, model.gdn_kernel, model.gdn_scan_slice,\n"
      "model.gdn_forward_output, model.fused_ops):\n"
      "that is a config error (exit 2), and so is --device cuda without a GPU."};
  return spec;
}

int run_eval(const ParsedArgs& args) {
  const std::filesystem::path run_dir = args.positionals[0];
  const auto config_path = run_dir / "config.yaml";
  if (!std::filesystem::exists(config_path)) {
    throw UsageError(run_dir.string() + " is not a run directory (no config.yaml)");
  }
  auto overrides = args.overrides;
  if (args.has("--device")) overrides.push_back("run.device=" + args.get("--device"));
  const auto config = train::load_run_config(config_path.string(), overrides);
  const at::Device device = train::resolve_device(config.run.device);

  auto report = [&](const std::filesystem::path& dir, const std::string& problem) {
    std::fprintf(stderr, "%s (%s)\n", problem.c_str(), dir.string().c_str());
    io::JsonlWriter(run_dir / "events.jsonl")
        .write(io::JsonRecord()
                   .add("event", "checkpoint_rejected")
                   .add("checkpoint", dir.string())
                   .add("problem", problem)
                   .add("by", "eval"));
  };
  std::optional<int64_t> only;
  if (args.has("--step")) only = args.get_int("--step", 0);
  const auto checkpoint = train::find_latest_valid_checkpoint(run_dir, report, only);
  if (!checkpoint) {
    std::cerr << "hypnos eval: no valid checkpoint" << (only ? " for that step" : "") << " in "
              << run_dir.string() << "\n";
    return 1;
  }
  // The model must be the one trained: its keys may not change (how its ops compute may).
  std::set<std::string> ops_keys;
  for (const auto& key : config::list_keys<ops::OpsOptions>()) ops_keys.insert("model." + key.key);
  const auto saved = std::filesystem::exists(*checkpoint / "config.yaml")
                         ? *checkpoint / "config.yaml"
                         : config_path;
  std::string refused;
  for (const auto& c : train::config_changes(io::read_file(saved), train::run_config_yaml(config),
                                             saved.string())) {
    // The weights' dtype is the trained model's too: the checkpoint holds them in it.
    if ((c.key.rfind("model.", 0) == 0 && ops_keys.count(c.key) == 0) ||
        c.key == "train.param_dtype") {
      refused += (refused.empty() ? "" : ", ") + c.str();
    }
  }
  if (!refused.empty()) {
    throw config::ConfigError("config error: eval cannot change the trained model: " + refused +
                              " (" + saved.string() + ")");
  }

  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  // As the run trained it (train.param_dtype), so that it evaluates as the trainer's evaluation
  // did.
  nn::HybridLM model = train::build_training_model(config.model, config.train.param_dtype,
                                                   train::InitialWeights::kLoadedNext);
  model->to(device);
  std::vector<std::string> nonfinite;
  const auto state = train::load_checkpoint(*checkpoint, model, nullptr, &nonfinite);
  for (const auto& tensor : nonfinite) {
    std::fprintf(stderr, "hypnos eval: warning: %s holds non-finite weights: %s\n",
                 checkpoint->string().c_str(), tensor.c_str());
  }
  const auto task = tasks::make_task(config.task, static_cast<uint64_t>(config.run.seed));
  const train::EvalOptions options{config.train.eval_examples, config.train.eval_batch_size,
                                   config.train.precision == train::Precision::kBf16};
  const auto metrics = train::evaluate(model, *task, config.sleep, options);
  std::printf("checkpoint step %lld, %lld test examples, N = %lld\n",
              static_cast<long long>(state.step), static_cast<long long>(options.examples),
              static_cast<long long>(config.sleep.n_passes));
  std::printf("%-12s %8s %10s %10s %8s\n", "bucket", "exact", "token_acc", "ce", "groups");
  auto row = [](const std::string& name, const tasks::BucketMetrics& m) {
    std::printf("%-12s %8.4f %10.4f %10.4f %8lld\n", name.c_str(), m.exact_accuracy(),
                m.token_accuracy(), m.mean_ce(), static_cast<long long>(m.groups));
  };
  for (const auto& [name, m] : metrics.buckets()) row(name, m);
  row("all", metrics.overall());
  std::printf("%s\n", metrics.to_json().c_str());
  return 0;
}

}  // namespace hypnos::cli
