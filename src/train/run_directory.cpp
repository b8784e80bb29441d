// Creating, locking and resuming run directories without ever overwriting what an earlier run left.
#include "hypnos/train/run_directory.h"

#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "hypnos/config/error.h"
#include "hypnos/io/durable.h"
#include "hypnos/io/file_lock.h"
#include "hypnos/version.h"

namespace hypnos::train {
namespace fs = std::filesystem;

namespace {

// What the start of a run writes into its directory (besides run.lock and checkpoints/).
constexpr const char* kStartFiles[] = {"config.yaml",   "command.txt",  "git_commit.txt",
                                       "metrics.jsonl", "events.jsonl", "train.log"};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  return lines;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::vector<std::string> yaml_line_keys(const std::string& yaml) {
  std::vector<std::string> keys, stack;
  for (const auto& line : split_lines(yaml)) {
    const size_t indent = line.find_first_not_of(' ');
    const size_t colon = line.find(':');
    if (indent == std::string::npos || colon == std::string::npos) {
      keys.emplace_back();
      continue;
    }
    const size_t depth = indent / 2;
    stack.resize(std::min(stack.size(), depth));
    const std::string name = line.substr(indent, colon - indent);
    std::string full;
    for (const auto& s : stack) full += s + ".";
    full += name;
    const bool is_section = colon + 1 == line.size();
    if (is_section) {
      stack.push_back(name);
      keys.emplace_back();
    } else {
      keys.push_back(full);
    }
  }
  return keys;
}

RunDirectoryLock::RunDirectoryLock(const fs::path& dir) {
  std::error_code ec;
  created_directory_ = !fs::exists(dir, ec);
  fs::create_directories(dir);
  const fs::path path = dir / kRunLockName;
  lock_ = io::ExclusiveFileLock::try_lock(path);
  if (!lock_) {
    const long pid = io::lock_holder_pid(path);
    throw config::ConfigError(
        "run directory " + dir.string() + " is in use by another hypnos train (" +
        (pid > 0 ? "pid " + std::to_string(pid) : std::string("pid unknown")) + ", holding " +
        path.string() + "); wait for it to finish or stop it, then resume");
  }
}

std::vector<ConfigChange> config_changes(const std::string& before_yaml,
                                         const std::string& after_yaml, const std::string& what) {
  const auto before_lines = split_lines(before_yaml);
  const auto after_lines = split_lines(after_yaml);
  const auto before_keys = yaml_line_keys(before_yaml);
  const auto after_keys = yaml_line_keys(after_yaml);
  if (before_keys != after_keys) {
    throw config::ConfigError("the config has different keys than " + what +
                              " (another task or a different hypnos version?)");
  }
  std::vector<ConfigChange> changes;
  const auto value = [](const std::string& l) { return l.substr(l.find(':') + 2); };
  for (size_t i = 0; i < before_lines.size(); ++i) {
    if (before_lines[i] == after_lines[i]) continue;
    changes.push_back({after_keys[i], value(before_lines[i]), value(after_lines[i])});
  }
  return changes;
}

std::vector<ConfigChange> check_resume_config(const fs::path& dir, const std::string& saved_yaml,
                                              const std::string& saved_what,
                                              const std::string& config_yaml,
                                              bool (*resumable)(const std::string& key)) {
  std::vector<ConfigChange> changes;
  try {
    changes = config_changes(saved_yaml, config_yaml, saved_what);
  } catch (const config::ConfigError& e) {
    throw config::ConfigError("cannot resume " + dir.string() + ": " + e.what());
  }
  std::string refused;
  for (const auto& c : changes) {
    if (!resumable(c.key)) refused += (refused.empty() ? "" : ", ") + c.str();
  }
  if (!refused.empty()) {
    throw config::ConfigError(
        "cannot resume " + dir.string() + ": the config differs from " + saved_what +
        " in keys that cannot change on resume: " + refused +
        " (only steps, evaluation, logging and checkpoint keys may: configs/README.md; train "
        "into another --out to use these values)");
  }
  return changes;
}

bool holds_run(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / "config.yaml", ec) || fs::exists(dir / "metrics.jsonl", ec);
}

void check_run_directory(const fs::path& dir, bool resume) {
  const fs::path config_path = dir / "config.yaml";
  if (resume) {
    if (!fs::exists(config_path)) {
      throw config::ConfigError("cannot resume: " + config_path.string() +
                                " does not exist (start the run without --resume)");
    }
  } else if (holds_run(dir)) {
    throw config::ConfigError(
        "run directory " + dir.string() +
        " already holds a run: pass --resume to continue it, or another --out");
  }
}

void prepare_run_directory(const fs::path& dir, const std::string& config_yaml,
                           const std::string& command_line, bool resume) {
  check_run_directory(dir, resume);
  const fs::path config_path = dir / "config.yaml";
  fs::create_directories(dir);
  io::write_file_atomic(config_path, config_yaml);
  io::append_line(dir / "command.txt", utc_now() + "  " + command_line);
  io::append_line(dir / "git_commit.txt", utc_now() + "  " + std::string(kGitCommit));
}

std::vector<std::string> run_files_present(const fs::path& dir) {
  std::vector<std::string> present;
  for (const char* name : kStartFiles) {
    struct stat st;
    if (::lstat((dir / name).c_str(), &st) == 0) present.emplace_back(name);
  }
  return present;
}

void remove_failed_start(const fs::path& dir, const std::vector<std::string>& present_before,
                         bool remove_directory) {
  // unlink, not remove_tree: a directory in the way of a file (what made the start fail, say) is
  // not this start's to delete.
  for (const char* name : kStartFiles) {
    if (std::find(present_before.begin(), present_before.end(), name) == present_before.end()) {
      ::unlink((dir / name).c_str());
    }
  }
  ::rmdir((dir / "checkpoints").c_str());  // only when empty
  if (!remove_directory) return;
  // run.lock goes last, and only with the directory: a process that opens it now finds no run.
  ::unlink((dir / kRunLockName).c_str());
  ::rmdir(dir.c_str());  // only when empty: never anything this start did not write
}

fs::path default_run_directory(const std::string& out_dir, const std::string& config_path) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
  const std::string stem = config_path.empty() ? "defaults" : fs::path(config_path).stem().string();
  return fs::path(out_dir) / (stem + "-" + stamp);
}

}  // namespace hypnos::train
