// Creating and resuming run directories without ever overwriting what an earlier run left.
#include "hypnos/train/run_directory.h"

#include <ctime>

#include "hypnos/config/error.h"
#include "hypnos/io/durable.h"
#include "hypnos/version.h"

namespace hypnos::train {
namespace fs = std::filesystem;

namespace {

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

std::vector<std::string> prepare_run_directory(const fs::path& dir, const std::string& config_yaml,
                                               const std::string& command_line, bool resume,
                                               bool (*resumable)(const std::string& key)) {
  const fs::path config_path = dir / "config.yaml";
  std::vector<std::string> changed;
  if (resume) {
    if (!fs::exists(config_path)) {
      throw config::ConfigError("cannot resume: " + config_path.string() +
                                " does not exist (start the run without --resume)");
    }
    const std::string old_yaml = io::read_file(config_path);
    const auto old_lines = split_lines(old_yaml);
    const auto new_lines = split_lines(config_yaml);
    const auto old_keys = yaml_line_keys(old_yaml);
    const auto new_keys = yaml_line_keys(config_yaml);
    if (old_keys != new_keys) {
      throw config::ConfigError("cannot resume " + dir.string() +
                                ": the config has different keys than its config.yaml (another "
                                "task or a different hypnos version?)");
    }
    for (size_t i = 0; i < old_lines.size(); ++i) {
      if (old_lines[i] == new_lines[i]) continue;
      const auto value = [](const std::string& l) { return l.substr(l.find(':') + 2); };
      if (!resumable(new_keys[i])) {
        throw config::ConfigError("cannot resume " + dir.string() + ": " + new_keys[i] +
                                  " differs from the run's config.yaml (" + value(old_lines[i]) +
                                  " -> " + value(new_lines[i]) +
                                  "); only steps, evaluation, logging and checkpoint keys may change");
      }
      changed.push_back(new_keys[i] + ": " + value(old_lines[i]) + " -> " + value(new_lines[i]));
    }
  } else if (fs::exists(config_path) || fs::exists(dir / "metrics.jsonl")) {
    throw config::ConfigError("run directory " + dir.string() +
                              " already holds a run: pass --resume to continue it, or another --out");
  }
  fs::create_directories(dir);
  io::write_file_atomic(config_path, config_yaml);
  io::append_line(dir / "command.txt", utc_now() + "  " + command_line);
  io::append_line(dir / "git_commit.txt", utc_now() + "  " + std::string(kGitCommit));
  return changed;
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
