// Internal: a framework-free launcher's status (kernels/*.h) as an exception naming the op and
// the kernel, for the LibTorch wrappers of the CUDA kernels.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace hypnos::ops {

inline void throw_on_kernel_error(cudaError_t status, const char* op, const char* kernel) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(op) + ": " + kernel +
                             " failed: " + cudaGetErrorString(status));
  }
}

}  // namespace hypnos::ops
