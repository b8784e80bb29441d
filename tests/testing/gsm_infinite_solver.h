// Test code: the independent GSM-Infinite solver of docs/tasks.md 3.4: parses only a problem's text
// and question (never generator internals) and returns the answer and the op count, to test the
// generator.
#pragma once
#include <cstdint>
#include <string_view>

namespace hypnos::tasks {

struct GsmSolution {
  int64_t answer = 0;
  int64_t op = 0;
  bool reverse = false;  ///< some subject "is greater than 0": the answer is that unknown
};

/// Solves one problem. Throws std::invalid_argument naming the sentence that does not parse, and
/// std::runtime_error for an undefined reference, a cycle, or a reverse problem without a unique
/// integer root x >= 1 of degree 1.
GsmSolution solve_gsm(std::string_view problem, std::string_view question);

}  // namespace hypnos::tasks
