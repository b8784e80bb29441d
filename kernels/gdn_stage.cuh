// Moving the tensor-core kernels' bf16 tiles between global and shared memory, 16 bytes per access,
// by every thread of a block of NT: staging rows by loads or cp.async (rows past the tokens of a
// chunk written as zeros), storing rows, and the bf16 packing helpers.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

namespace hypnos::kernels::detail {

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  unsigned bits;
  memcpy(&bits, &h, sizeof bits);
  return bits;
}

/// Stores two adjacent bf16 values (one 4-byte store; the pair is 4-byte aligned).
__device__ __forceinline__ void store_bf16_pair(__nv_bfloat16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}

/// Eight bf16 values (16 bytes, as loaded) as floats, element 2i in the low half of word i.
__device__ __forceinline__ void unpack8(const uint4& raw, float (&x)[8]) {
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    x[2 * i] = __uint_as_float(words[i] << 16);
    x[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint4 pack8(const float (&x)[8]) {
  return {pack_bf16(x[0], x[1]), pack_bf16(x[2], x[3]), pack_bf16(x[4], x[5]),
          pack_bf16(x[6], x[7])};
}

/// Rows [0, kRows) and columns [0, kCols) of a bf16 matrix with row stride `stride` (elements)
/// into a tile of row stride ld; rows at or past `valid` are zero. src rows 16-byte aligned.
template <int kRows, int kCols, int NT>
__device__ __forceinline__ void stage_bf16(__nv_bfloat16* tile, int ld, const __nv_bfloat16* src,
                                           int64_t stride, int valid) {
  constexpr int kPerRow = kCols / 8;
  for (int idx = threadIdx.x; idx < kRows * kPerRow; idx += NT) {
    const int i = idx / kPerRow, c = (idx % kPerRow) * 8;
    uint4 x = {0u, 0u, 0u, 0u};
    if (i < valid) x = __ldg(reinterpret_cast<const uint4*>(src + i * stride + c));
    *reinterpret_cast<uint4*>(tile + i * ld + c) = x;
  }
}

/// Rows [0, kRows) of a bf16 tile (row stride ld) into global rows (stride `stride`), 16 bytes per
/// store; negate flips every sign (exact).
template <int kRows, int kCols, int NT>
__device__ __forceinline__ void store_rows(__nv_bfloat16* dst, int64_t stride,
                                           const __nv_bfloat16* tile, int ld, bool negate) {
  constexpr int kPerRow = kCols / 8;
  const unsigned flip = negate ? 0x80008000u : 0u;
  for (int idx = threadIdx.x; idx < kRows * kPerRow; idx += NT) {
    const int i = idx / kPerRow, c = (idx % kPerRow) * 8;
    uint4 x = *reinterpret_cast<const uint4*>(tile + i * ld + c);
    x.x ^= flip, x.y ^= flip, x.z ^= flip, x.w ^= flip;
    *reinterpret_cast<uint4*>(dst + i * stride + c) = x;
  }
}

/// cp.async (sm_80+): 16 bytes from global to shared memory without passing through registers,
/// zero-filled when !valid (src must still be a valid address). Completion is awaited per commit
/// group with cp_async_wait<N> (at most N groups still pending), then a barrier publishes it.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(src),
               "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/// stage_bf16 by cp.async (the caller commits and waits).
template <int kRows, int kCols, int NT>
__device__ __forceinline__ void stage_bf16_async(__nv_bfloat16* tile, int ld,
                                                 const __nv_bfloat16* src, int64_t stride,
                                                 int valid) {
  constexpr int kPerRow = kCols / 8;
  for (int idx = threadIdx.x; idx < kRows * kPerRow; idx += NT) {
    const int i = idx / kPerRow, c = (idx % kPerRow) * 8;
    cp_async16(tile + i * ld + c, src + (i < valid ? i * stride : 0) + c, i < valid);
  }
}

}  // namespace hypnos::kernels::detail
