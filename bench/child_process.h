// The benches measure each configuration in a fresh process (a clean allocator and peak-memory
// count): this runs the `hypnos_bench` program itself again with `args` and captures its standard
// output.
#pragma once
#include <string>
#include <vector>

namespace hypnos::bench {

struct ChildResult {
  std::string output;  ///< the child's standard output
  bool ok = false;     ///< exited normally with status 0
};

/// Runs /proc/self/exe with `args` (args[0] included) and waits for it. `who` names the bench in
/// the error thrown when the child cannot be started.
ChildResult run_self(std::vector<std::string> args, const std::string& who);

}  // namespace hypnos::bench
