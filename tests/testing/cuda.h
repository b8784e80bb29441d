// Test helpers for the GPU tests: skipping without a device, and fp32 without TF32 for a scope.
#pragma once
#include <ATen/Context.h>
#include <torch/cuda.h>

/// Skips the current test (with the reason) on a machine without a CUDA device.
#define HYPNOS_REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

namespace hypnos::testing {

/// fp32 matmuls and convolutions on a GPU without TF32 for a scope. GPU-vs-CPU and
/// kernel-vs-composition comparisons at fp32 tolerances need it: cuDNN allows TF32 by default, and
/// the trainer turns it on for cuBLAS for the whole process (a test that trains first leaks it).
class ExactFp32 {
 public:
  ExactFp32()
      : cublas_(at::globalContext().allowTF32CuBLAS()),
        cudnn_(at::globalContext().allowTF32CuDNN()) {
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }
  ~ExactFp32() {
    at::globalContext().setAllowTF32CuBLAS(cublas_);
    at::globalContext().setAllowTF32CuDNN(cudnn_);
  }
  ExactFp32(const ExactFp32&) = delete;
  ExactFp32& operator=(const ExactFp32&) = delete;

 private:
  bool cublas_, cudnn_;
};

}  // namespace hypnos::testing
