// Fault injection for the reliability tests (docs/reliability.md R5-R8): named points where a test
// can make the process die as if by kill -9, or a step's loss become NaN. Inert unless the
// variables are set.
//   HYPNOS_FAULT=<point>                  raise SIGKILL when execution reaches <point>
//   HYPNOS_FAULT_NONFINITE_STEP=<step>[,<step>...]  the loss of those (0-based) steps is multiplied
//                                                    by NaN
#pragma once
#include <unistd.h>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace hypnos::train::fault {

/// Points: "save.before_commit" (checkpoint files written, not yet renamed into place),
/// "step.after_update" (an optimizer update done, its metrics not yet logged).
inline void point(const char* name) {
  const char* want = std::getenv("HYPNOS_FAULT");
  if (want && std::strcmp(want, name) == 0) ::kill(::getpid(), SIGKILL);
}

/// HYPNOS_FAULT_NONFINITE_STEP is one step or a comma-separated list ("5,6,7": consecutive
/// non-finite steps, for train.max_skips).
inline bool nonfinite_at(int64_t step) {
  const char* s = std::getenv("HYPNOS_FAULT_NONFINITE_STEP");
  if (s == nullptr) return false;
  const std::string list = std::string(",") + s + ",";
  return list.find("," + std::to_string(step) + ",") != std::string::npos;
}

}  // namespace hypnos::train::fault
