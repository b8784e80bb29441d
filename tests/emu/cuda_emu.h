// A CPU emulation of the part of CUDA's execution model that the fused layer kernels use, so that
// their own source runs on any machine (tests/emu/layer_ops_emulated.cpp): the blocks of a launch
// run one after another, the threads of a block run as std::threads, __syncthreads is a barrier of
// the block and a warp shuffle exchanges through a buffer between two barriers of the warp. Shared
// arrays are statics (one block at a time), loads and intrinsics are their host equivalents, bf16
// is round-to-nearest-even on the bits. It checks index arithmetic, strides, masks, reductions and
// synchronisation; not memory coalescing, occupancy or anything about a real GPU's speed.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
using cudaStream_t = void*;
inline cudaError_t cudaGetLastError() {
  return cudaSuccess;
}

struct __nv_bfloat16 {
  uint16_t bits = 0;
};
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  if (std::isnan(f)) return {uint16_t(0x7fc0)};
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return {uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

template <class T>
inline T __ldg(const T* p) {
  return *p;
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float rsqrtf(float x) {
  return 1.f / std::sqrt(x);
}

namespace emu {

inline std::unique_ptr<std::barrier<>> block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<float> shuffle_buffer;

/// Runs body() as every thread of every block of the grid: one std::thread per thread of a block,
/// walking the blocks in order together (a barrier between blocks, so shared statics are reused
/// only once the whole block is done).
template <class F>
void launch(dim3 grid, dim3 block, F body) {
  gridDim = grid;
  blockDim = block;
  const unsigned n = block.x * block.y * block.z, blocks = grid.x * grid.y * grid.z;
  block_barrier = std::make_unique<std::barrier<>>(n);
  warp_barriers.clear();
  for (unsigned w = 0; w * 32 < n; ++w) {
    warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, n - 32 * w)));
  }
  shuffle_buffer.assign(n, 0.f);
  std::barrier<> between_blocks(n);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      for (unsigned i = 0; i < blocks; ++i) {
        blockIdx = dim3(i % grid.x, (i / grid.x) % grid.y, i / (grid.x * grid.y));
        body();  // a thread that returns early must not meet a later __syncthreads (none here do)
        between_blocks.arrive_and_wait();
      }
    });
  }
  for (auto& thread : threads) thread.join();
}

}  // namespace emu

inline void __syncthreads() {
  emu::block_barrier->arrive_and_wait();
}

/// Every lane of the warp must call it (as on a GPU with a full mask).
inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask) {
  const unsigned t = threadIdx.x, warp = t / 32;
  emu::shuffle_buffer[t] = v;
  emu::warp_barriers[warp]->arrive_and_wait();
  const float other = emu::shuffle_buffer[warp * 32 + ((t % 32) ^ unsigned(lane_mask))];
  emu::warp_barriers[warp]->arrive_and_wait();
  return other;
}
