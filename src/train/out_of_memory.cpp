// Recognising allocation failures among LibTorch's exceptions (out_of_memory.h).
#include "train/out_of_memory.h"

#include <c10/util/Exception.h>

#include <new>

namespace hypnos::train {

std::optional<std::string> out_of_memory_message(const std::exception& e) {
  std::string what;
  if (const auto* oom = dynamic_cast<const c10::OutOfMemoryError*>(&e)) {
    what = oom->what_without_backtrace();
  } else if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    // The CPU allocator fails with a plain c10::Error ("[enforce fail at alloc_cpu.cpp:..] ...
    // DefaultCPUAllocator: can't allocate memory"), not OutOfMemoryError (seen with torch 2.11).
    what = error->what_without_backtrace();
    if (what.find("DefaultCPUAllocator: can't allocate memory") == std::string::npos &&
        what.find("DefaultCPUAllocator: not enough memory") == std::string::npos) {
      return std::nullopt;
    }
  } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
    what = "std::bad_alloc";
  } else {
    return std::nullopt;
  }
  return what.substr(0, what.find('\n'));
}

}  // namespace hypnos::train
