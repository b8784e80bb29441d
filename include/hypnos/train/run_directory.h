// A run directory (DESIGN.md 3): config.yaml, command.txt, git_commit.txt, metrics.jsonl, events.jsonl,
// checkpoints/. Creating one never overwrites a previous run; resuming one checks the config.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace hypnos::train {

/// Prepares `dir` for a run whose resolved config is `config_yaml`:
/// - new run: `dir` must not hold a run yet (config.yaml or metrics.jsonl); writes config.yaml;
/// - resume: `dir` must hold config.yaml; lines that differ must be resumable keys (`resumable`
///   decides by full key path), else config::ConfigError naming the first differing key; config.yaml
///   is then rewritten with the new values. Returns the keys that changed ("train.steps: 30 -> 60").
/// Both append the command line to command.txt and the build's git commit to git_commit.txt.
std::vector<std::string> prepare_run_directory(const std::filesystem::path& dir,
                                               const std::string& config_yaml,
                                               const std::string& command_line, bool resume,
                                               bool (*resumable)(const std::string& key));

/// "runs/<config file stem>-<UTC yyyymmdd-hhmmss>" under `out_dir`.
std::filesystem::path default_run_directory(const std::string& out_dir, const std::string& config_path);

/// The key path of each line of a resolved config (YAML written by config::Writer), e.g.
/// "sleep.n_passes" for "  n_passes: 2" under "sleep:"; section lines give "".
std::vector<std::string> yaml_line_keys(const std::string& yaml);

}  // namespace hypnos::train
