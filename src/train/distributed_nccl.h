// The NCCL backend factory, defined in distributed_nccl_cuda.cpp (built only with
// HYPNOS_WITH_CUDA_TORCH) so that CPU builds never need nccl.h.
#pragma once
#include <chrono>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace hypnos::train::detail {

/// A ProcessGroupNCCL on CUDA device `device_index` (made current), collectives bounded by
/// `timeout`.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int size,
                                                    std::chrono::milliseconds timeout,
                                                    int device_index);

}  // namespace hypnos::train::detail
