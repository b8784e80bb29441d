// The build's paths, set on this file only by tests/CMakeLists.txt (see paths.h).
#include "testing/paths.h"

namespace hypnos::testing {

const char* source_dir() {
  return HYPNOS_SOURCE_DIR;
}
const char* binary_dir() {
  return HYPNOS_BINARY_DIR;
}
const char* python() {
  return HYPNOS_PYTHON;
}
const char* cli() {
  return HYPNOS_CLI;
}

}  // namespace hypnos::testing
