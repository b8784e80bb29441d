// The --reps option of the benches that time each case several times (kernels, layers, ops).
#pragma once
#include <map>
#include <stdexcept>
#include <string>

namespace hypnos::bench {

/// --reps from the parsed flags (`fallback` when absent); not a positive integer throws
/// std::invalid_argument (hypnos_bench reports it as a usage error).
inline int reps_flag(const std::map<std::string, std::string>& flags, int fallback) {
  const auto it = flags.find("--reps");
  if (it == flags.end()) return fallback;
  int reps = 0;
  try {
    reps = std::stoi(it->second);
  } catch (const std::exception&) {
  }
  if (reps < 1) {
    throw std::invalid_argument("--reps expects a positive integer, got '" + it->second + "'");
  }
  return reps;
}

}  // namespace hypnos::bench
