// The message of the exception a call throws, for tests that check what an error names.
#pragma once
#include <exception>
#include <string>
#include <utility>

namespace hypnos::testing {

/// The what() of the exception of type E (or derived) that `call` throws; "" when it throws
/// nothing. Another exception type propagates, so a test that expects E fails on it.
template <class E = std::exception, class F>
std::string error_message(F&& call) {
  try {
    std::forward<F>(call)();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

}  // namespace hypnos::testing
