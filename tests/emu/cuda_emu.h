// A CPU emulation of the part of CUDA's execution model that hypnos's kernels use, so that their
// own source runs on any machine (tests/emu/*_emulated.cpp): the blocks of a launch run one after
// another, the threads of a block run as std::threads, __syncthreads is a barrier of the block, and
// warp shuffles, ldmatrix and the tensor-core mma.sync m16n8k16 (bf16, the PTX ISA's fragment
// layouts) exchange through a buffer between two barriers of the warp; cp.async is an immediate
// copy. Static shared arrays are statics and dynamic shared memory one buffer (one block at a time,
// filled with NaN before each block so a read of something never written shows), loads and
// intrinsics are their host equivalents, bf16 is rounded on the bits as the hardware does. It
// checks index arithmetic, strides, masks, reductions, fragment layouts and synchronisation; not
// memory coalescing, bank conflicts, races the barriers hide, or anything about a real GPU's speed.
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

struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
/// The emulated ldmatrix takes generic pointers: the shared-window address is not used.
inline size_t __cvta_generic_to_shared(const void*) {
  return 0;
}

template <class T>
inline T __ldg(const T* p) {
  return *p;
}
struct alignas(8) float2 {
  float x = 0.f, y = 0.f;
};
struct alignas(16) float4 {
  float x = 0.f, y = 0.f, z = 0.f, w = 0.f;
};
struct alignas(16) uint4 {
  unsigned x = 0, y = 0, z = 0, w = 0;
};
inline float2 __bfloat1622float2(__nv_bfloat162 h) {
  float2 r;
  r.x = __bfloat162float(h.x);
  r.y = __bfloat162float(h.y);
  return r;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float rsqrtf(float x) {
  return 1.f / std::sqrt(x);
}
inline int min(int a, int b) {
  return a < b ? a : b;
}

inline constexpr int cudaFuncAttributeMaxDynamicSharedMemorySize = 8;
inline constexpr int cudaFuncAttributePreferredSharedMemoryCarveout = 9;
inline constexpr int cudaSharedmemCarveoutMaxShared = 100;
template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel, int, int) {
  return cudaSuccess;
}

namespace emu {

inline std::unique_ptr<std::barrier<>> block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<float> shuffle_buffer;
inline std::vector<float> dynamic_shared_buffer;
struct MmaSlot {
  float a[4], b[2];
};
inline std::vector<MmaSlot> mma_buffer;
inline std::vector<const void*> address_buffer;

inline float* dynamic_shared() {
  return dynamic_shared_buffer.data();
}

inline float from_bits(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline void warp_sync() {
  warp_barriers[threadIdx.x / 32]->arrive_and_wait();
}

/// cp.async as an immediate copy (zero-fill when src_size is 0): the kernels wait for their groups
/// before a barrier and reading, so an immediate copy gives the same values.
inline void cp_async16(void* dst, const void* src, int src_size) {
  if (src_size == 16) {
    std::memcpy(dst, src, 16);
  } else {
    std::memset(dst, 0, 16);
  }
}

inline float bf16_bits_to_float(unsigned half) {
  return from_bits(half << 16);
}

/// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 for the calling warp: lanes 8 m .. 8 m + 7 give
/// the row addresses of block m; register m of lane l gets elements (l / 4, 2 (l % 4) + e) of
/// block m, or (2 (l % 4) + e, l / 4) with .trans, e = 0 in the low half.
inline void ldmatrix_x4(unsigned (&r)[4], const void* row, bool trans) {
  const unsigned t = threadIdx.x, warp = t / 32, lane = t % 32;
  address_buffer[t] = row;
  warp_sync();
  for (int m = 0; m < 4; ++m) {
    unsigned packed = 0;
    for (int e = 0; e < 2; ++e) {
      const int stored_row = trans ? 2 * int(lane % 4) + e : int(lane / 4);
      const int stored_col = trans ? int(lane / 4) : 2 * int(lane % 4) + e;
      const auto* base =
          static_cast<const uint16_t*>(address_buffer[warp * 32 + 8 * m + stored_row]);
      packed |= unsigned(base[stored_col]) << (16 * e);
    }
    r[m] = packed;
  }
  warp_sync();
}

/// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 for the calling warp (Layout: the
/// fragment layout functions, mma::M16N8K16): products of bf16 values are exact in fp32.
template <class Layout>
void mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  const unsigned t = threadIdx.x, warp = t / 32, lane = t % 32;
  for (int r = 0; r < 4; ++r) mma_buffer[t].a[r] = from_bits(a[r]);
  mma_buffer[t].b[0] = from_bits(b0);
  mma_buffer[t].b[1] = from_bits(b1);
  warp_sync();
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const MmaSlot& slot = mma_buffer[warp * 32 + l];
    for (int r = 0; r < 4; ++r) {
      unsigned bits;
      std::memcpy(&bits, &slot.a[r], sizeof bits);
      for (int e = 0; e < 2; ++e) {
        A[Layout::a_row(l, r)][Layout::a_col(l, r, e)] =
            bf16_bits_to_float((bits >> (16 * e)) & 0xffffu);
      }
    }
    for (int r = 0; r < 2; ++r) {
      unsigned bits;
      std::memcpy(&bits, &slot.b[r], sizeof bits);
      for (int e = 0; e < 2; ++e) {
        B[Layout::b_row(l, r, e)][Layout::b_col(l, r)] =
            bf16_bits_to_float((bits >> (16 * e)) & 0xffffu);
      }
    }
  }
  for (int r = 0; r < 4; ++r) {
    const int i = Layout::c_row(int(lane), r), j = Layout::c_col(int(lane), r);
    float acc = d[r];
    for (int k = 0; k < 16; ++k) acc = std::fma(A[i][k], B[k][j], acc);
    d[r] = acc;
  }
  warp_sync();
}

/// Runs body() as every thread of every block of the grid: one std::thread per thread of a block,
/// walking the blocks in order together (a barrier between blocks, so shared statics are reused
/// only once the whole block is done).
template <class F>
void launch(dim3 grid, dim3 block, size_t shared_bytes, F body) {
  gridDim = grid;
  blockDim = block;
  const unsigned n = block.x * block.y * block.z, blocks = grid.x * grid.y * grid.z;
  block_barrier = std::make_unique<std::barrier<>>(n);
  warp_barriers.clear();
  for (unsigned w = 0; w * 32 < n; ++w) {
    warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, n - 32 * w)));
  }
  shuffle_buffer.assign(n, 0.f);
  mma_buffer.assign(n, MmaSlot{});
  address_buffer.assign(n, nullptr);
  dynamic_shared_buffer.assign((shared_bytes + sizeof(float) - 1) / sizeof(float), 0.f);
  std::barrier<> between_blocks(n);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      for (unsigned i = 0; i < blocks; ++i) {
        blockIdx = dim3(i % grid.x, (i / grid.x) % grid.y, i / (grid.x * grid.y));
        if (t == 0) {
          std::fill(dynamic_shared_buffer.begin(), dynamic_shared_buffer.end(), std::nanf(""));
        }
        block_barrier->arrive_and_wait();
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

/// Every lane of the warp must call the shuffles (as on a GPU with a full mask).
inline float __shfl_up_sync(unsigned /*mask*/, float v, unsigned delta) {
  const unsigned t = threadIdx.x, lane = t % 32;
  emu::shuffle_buffer[t] = v;
  emu::warp_sync();
  const float other = lane >= delta ? emu::shuffle_buffer[t - delta] : v;
  emu::warp_sync();
  return other;
}

inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask) {
  const unsigned t = threadIdx.x, warp = t / 32;
  emu::shuffle_buffer[t] = v;
  emu::warp_sync();
  const float other = emu::shuffle_buffer[warp * 32 + ((t % 32) ^ unsigned(lane_mask))];
  emu::warp_sync();
  return other;
}
