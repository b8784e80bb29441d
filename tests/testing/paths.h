// Where the build put things, for tests that run the command line, Python or read repository files.
// The values are compiled into tests/testing/paths.cpp alone, so that every other test file
// compiles the same in any checkout directory (and ccache shares it between checkouts).
#pragma once

namespace hypnos::testing {

const char* source_dir();  ///< the repository root
const char* binary_dir();  ///< the CMake build directory
const char* python();      ///< the Python given to CMake as HYPNOS_PYTHON ("" when none)
const char* cli();         ///< the built `hypnos` command

}  // namespace hypnos::testing
