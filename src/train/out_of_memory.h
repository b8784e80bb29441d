// Which exceptions are allocation failures (docs/reliability.md R11): the trainer
// turns them into one line naming the phase and the config, and exit code 4.
#pragma once
#include <exception>
#include <optional>
#include <string>

namespace hypnos::train {

/// The first line of the failure's message when `e` is an allocation failure, else nullopt. CUDA
/// and the caching allocators throw c10::OutOfMemoryError; the CPU allocator a plain c10::Error
/// naming DefaultCPUAllocator (torch 2.11); operator new std::bad_alloc.
std::optional<std::string> out_of_memory_message(const std::exception& e);

}  // namespace hypnos::train
