// The one exception type for bad configuration (files, overrides, command-line values): `main`
// turns it into exit code 2 before anything is written.
#pragma once
#include <stdexcept>
#include <string>

namespace hypnos::config {

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& message) : std::runtime_error(message) {}
};

/// Exit code for configuration and usage errors (docs/design.md 3).
inline constexpr int kConfigErrorExitCode = 2;

}  // namespace hypnos::config
