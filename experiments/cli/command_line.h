// Argument parsing for the `hypnos` subcommands and the `hypnos_bench` program: positionals,
// --flags (with or without a value) and Hydra-style key.path=value overrides. Anything unknown is a
// UsageError (exit 2 with the usage).
#pragma once
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace hypnos::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct FlagSpec {
  std::string name;        ///< "--out"
  std::string value_name;  ///< "DIR"; empty for a switch
  std::string help;
};

struct CommandSpec {
  std::string name;                      ///< "train"; empty for a program of one command
  std::string summary;                   ///< one line for `hypnos --help`
  std::vector<std::string> positionals;  ///< required, in order: {"CONFIG.yaml"}
  std::vector<FlagSpec> flags;
  bool takes_overrides = true;  ///< accepts key.path=value arguments
  std::string details;          ///< extra paragraphs for `hypnos NAME --help`
  /// The program that runs the command: "hypnos_bench" has one command, with an empty name.
  /// Default: "hypnos".
  std::string program = "hypnos";
};

/// "hypnos train", or the program alone for a spec without a name ("hypnos_bench").
std::string command_of(const CommandSpec& spec);

struct ParsedArgs {
  std::vector<std::string> positionals;
  std::map<std::string, std::string> flags;  ///< "--out" -> "DIR"; switches map to ""
  std::vector<std::string> overrides;        ///< "sleep.n_passes=2", in order
  bool help = false;
  std::string command_line;  ///< the whole argv joined by spaces (recorded in run directories)

  bool has(const std::string& flag) const { return flags.count(flag) > 0; }
  std::string get(const std::string& flag, const std::string& fallback = "") const {
    auto it = flags.find(flag);
    return it == flags.end() ? fallback : it->second;
  }
  /// The flag's value as an integer; UsageError naming the flag otherwise.
  long long get_int(const std::string& flag, long long fallback) const;
};

/// Parses argv[first..argc) against `spec`. "--help"/"-h" sets help (and skips the positional
/// check).
ParsedArgs parse_args(const CommandSpec& spec, int argc, char** argv, int first);

/// "usage: hypnos train CONFIG.yaml [key.path=value ...] [--out DIR] [--resume]" plus flag help.
std::string usage(const CommandSpec& spec);

}  // namespace hypnos::cli
