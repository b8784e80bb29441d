// `hypnos train CONFIG.yaml [overrides] [--out DIR] [--resume]`: resolve the config (every error
// exits 2 before anything is written), pick the run directory, and hand over to train::train.
#include "commands.h"
#include "hypnos/train/run_directory.h"
#include "hypnos/train/trainer.h"

namespace hypnos::cli {

const CommandSpec& train_spec() {
  static const CommandSpec spec{
      "train",
      "train a model from a YAML config (one run directory per run)",
      {"CONFIG.yaml"},
      {{"--out", "DIR", "run directory (default: run.out_dir/<config name>-<UTC time>)"},
       {"--resume", "", "continue the run in --out from its newest valid checkpoint"},
       {"--dry-run", "", "print the resolved config and exit without training"}},
      /*takes_overrides=*/true,
      "Overrides follow the config file: hypnos train configs/rule110/default.yaml "
      "sleep.n_passes=4\n"
      "Keys: configs/README.md (and which may change with --resume). One run at a time writes "
      "into\n"
      "a run directory (it holds DIR/run.lock). Exit codes: 0 done, 1 error, 2 bad config or\n"
      "arguments (also: the directory is in use, or a resume changes a key that may not change),\n"
      "3 non-finite loss (train.nonfinite: stop), 4 out of memory, 130 / 143 stopped by SIGINT /\n"
      "SIGTERM after checkpointing the last completed step (docs/reliability.md)."};
  return spec;
}

int run_train(const ParsedArgs& args) {
  const std::string& config_path = args.positionals[0];
  const auto config = train::load_run_config(config_path, args.overrides);
  if (args.has("--dry-run")) {
    std::cout << train::run_config_yaml(config);
    return 0;
  }
  if (args.has("--resume") && !args.has("--out")) {
    throw UsageError("--resume needs --out DIR (the run directory to continue)");
  }
  train::TrainRequest request;
  request.run_dir = args.has("--out")
                        ? std::filesystem::path(args.get("--out"))
                        : train::default_run_directory(config.run.out_dir, config_path);
  request.resume = args.has("--resume");
  request.command_line = args.command_line;
  return train::train(config, request);
}

}  // namespace hypnos::cli
