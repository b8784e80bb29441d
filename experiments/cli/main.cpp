// `hypnos`: train, eval, generate, score, sleep, answer and export from the command line
// (docs/design.md section 3); the benchmarks are a program of their own, `hypnos_bench`
// (bench/main.cpp). main turns exceptions into exit codes: 2 for usage and configuration errors, 1
// for everything else.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "commands.h"
#include "hypnos/config/error.h"
#include "hypnos/version.h"

namespace {

struct Subcommand {
  const hypnos::cli::CommandSpec& (*spec)();
  int (*run)(const hypnos::cli::ParsedArgs&);
};

const Subcommand kSubcommands[] = {
    {hypnos::cli::train_spec, hypnos::cli::run_train},
    {hypnos::cli::eval_spec, hypnos::cli::run_eval},
    {hypnos::cli::generate_spec, hypnos::cli::run_generate},
    {hypnos::cli::score_spec, hypnos::cli::run_score},
    {hypnos::cli::sleep_spec, hypnos::cli::run_sleep},
    {hypnos::cli::answer_spec, hypnos::cli::run_answer},
    {hypnos::cli::export_spec, hypnos::cli::run_export},
};

std::string top_usage() {
  std::string s =
      "usage: hypnos <command> [args] [key.path=value ...]\n\n"
      "hypnos trains hybrid SSM-attention language models that sleep (N recurrent passes over "
      "each\n"
      "window before its KV cache is evicted).\n\ncommands:\n";
  for (const auto& sub : kSubcommands) {
    std::string name = "  " + sub.spec().name;
    name.resize(12, ' ');
    s += name + sub.spec().summary + "\n";
  }
  return s + "\nRun 'hypnos <command> --help' for a command's arguments.\n";
}

}  // namespace

int main(int argc, char** argv) {
  using hypnos::cli::UsageError;
  if (argc < 2) {
    std::cerr << top_usage();
    return hypnos::config::kConfigErrorExitCode;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    std::cout << top_usage();
    return 0;
  }
  if (name == "--version") {
    std::cout << "hypnos " << hypnos::kVersion << " (" << hypnos::kGitCommit << ")\n";
    return 0;
  }
  for (const auto& sub : kSubcommands) {
    if (sub.spec().name != name) continue;
    const auto& spec = sub.spec();
    try {
      const auto args = hypnos::cli::parse_args(spec, argc, argv, 2);
      if (args.help) {
        std::cout << hypnos::cli::usage(spec);
        return 0;
      }
      return sub.run(args);
    } catch (const UsageError& e) {
      std::cerr << "hypnos " << name << ": " << e.what() << "\n\n" << hypnos::cli::usage(spec);
      return hypnos::config::kConfigErrorExitCode;
    } catch (const hypnos::config::ConfigError& e) {
      std::cerr << "hypnos " << name << ": " << e.what() << "\n";
      return hypnos::config::kConfigErrorExitCode;
    } catch (const std::exception& e) {
      std::cerr << "hypnos " << name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  if (name == "bench") {  // the command of earlier versions
    std::cerr << "hypnos: unknown command 'bench': the benchmarks are their own program, "
                 "hypnos_bench (built beside hypnos, not installed): hypnos_bench "
                 "kernels|layers|train|pretrained|ops [options]\n";
    return hypnos::config::kConfigErrorExitCode;
  }
  std::cerr << "hypnos: unknown command '" << name << "'\n\n" << top_usage();
  return hypnos::config::kConfigErrorExitCode;
}
