// Internal to src/tasks: names such as "x12" or "op3:" built by appending.
#pragma once
#include <cstdint>
#include <string>

namespace hypnos::tasks::detail {

/// prefix + n + suffix, built by appending (GCC 12 warns falsely on "x" + std::to_string(n)).
inline std::string tagged(const char* prefix, int64_t n, const char* suffix = "") {
  std::string s(prefix);
  s += std::to_string(n);
  s += suffix;
  return s;
}

}  // namespace hypnos::tasks::detail
