// A run directory (docs/design.md 3): config.yaml, command.txt, git_commit.txt, metrics.jsonl,
// events.jsonl, train.log, checkpoints/ and run.lock. One writer at a time holds run.lock; creating
// a run never overwrites a previous one; a resume may change only the resumable keys of the config.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hypnos/io/file_lock.h"

namespace hypnos::train {

/// The name of the lock file inside a run directory.
inline constexpr const char* kRunLockName = "run.lock";

/// The exclusive right to write into a run directory, held until destruction
/// (io::ExclusiveFileLock on DIR/run.lock: a killed holder never leaves a stale lock). Readers
/// (`hypnos eval`) do not take it.
class RunDirectoryLock {
 public:
  /// Creates `dir` when it does not exist, then locks it. Throws config::ConfigError naming the
  /// directory and the holder's pid when another process holds the lock.
  explicit RunDirectoryLock(const std::filesystem::path& dir);
  /// Whether the constructor created the directory (a failed start then removes it again).
  bool created_directory() const { return created_directory_; }

 private:
  std::optional<io::ExclusiveFileLock> lock_;
  bool created_directory_ = false;
};

/// One key whose value differs between two resolved configs.
struct ConfigChange {
  std::string key;     ///< "train.steps"
  std::string before;  ///< "30"
  std::string after;   ///< "60"
  /// "train.steps: 30 -> 60"
  std::string str() const { return key + ": " + before + " -> " + after; }
};

/// The keys whose values differ between two resolved configs (YAML written by config::Writer), in
/// file order. Throws config::ConfigError when the two do not have the same keys (another task or
/// another hypnos version); `what` names the older config in that message.
std::vector<ConfigChange> config_changes(const std::string& before_yaml,
                                         const std::string& after_yaml, const std::string& what);

/// For a resume of `dir` from a state saved with `saved_yaml` (the checkpoint's config, or the
/// run's config.yaml when there is no checkpoint; `saved_what` names it): the changes of
/// `config_yaml` against it, all resumable (`resumable` decides by full key path). Any other change
/// is a config::ConfigError naming every such key with both values.
std::vector<ConfigChange> check_resume_config(const std::filesystem::path& dir,
                                              const std::string& saved_yaml,
                                              const std::string& saved_what,
                                              const std::string& config_yaml,
                                              bool (*resumable)(const std::string& key));

/// Whether `dir` can be used as asked, before anything is written: a new run needs a directory that
/// does not hold a run yet (config.yaml or metrics.jsonl), a resume one that holds config.yaml.
/// config::ConfigError otherwise.
void check_run_directory(const std::filesystem::path& dir, bool resume);

/// Prepares `dir` for a run whose resolved config is `config_yaml` (check_run_directory first):
/// - new run: `dir` must not hold a run yet (config.yaml or metrics.jsonl), else
/// config::ConfigError;
/// - resume: `dir` must hold config.yaml, else config::ConfigError; the caller has checked the
///   config (check_resume_config).
/// Then writes config.yaml and appends the command line to command.txt and the build's git commit
/// to git_commit.txt.
void prepare_run_directory(const std::filesystem::path& dir, const std::string& config_yaml,
                           const std::string& command_line, bool resume);

/// Whether `dir` holds a run (config.yaml or metrics.jsonl).
bool holds_run(const std::filesystem::path& dir);

/// Which of the files a start writes (config.yaml, command.txt, git_commit.txt, metrics.jsonl,
/// events.jsonl, train.log) exist in `dir` now.
std::vector<std::string> run_files_present(const std::filesystem::path& dir);

/// Undoes the start of a new run that failed before training (a full disk, an unwritable
/// events.jsonl): removes those files that were not in `present_before` (never a directory in their
/// way) and checkpoints/ when empty; then, when `remove_directory` (the start created `dir`),
/// run.lock and `dir` itself if nothing else is left. Never throws. Starting the run again is then
/// not refused.
void remove_failed_start(const std::filesystem::path& dir,
                         const std::vector<std::string>& present_before, bool remove_directory);

/// "runs/<config file stem>-<UTC yyyymmdd-hhmmss>" under `out_dir`.
std::filesystem::path default_run_directory(const std::string& out_dir,
                                            const std::string& config_path);

/// The key path of each line of a resolved config (YAML written by config::Writer), e.g.
/// "sleep.n_passes" for "  n_passes: 2" under "sleep:"; section lines give "".
std::vector<std::string> yaml_line_keys(const std::string& yaml);

}  // namespace hypnos::train
