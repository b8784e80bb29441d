// Staging of the tensor-core kernels' operands: global rows into bf16 shared-memory tiles, 16 bytes
// per load, by every thread of a block of NT. bf16 inputs are copied; fp32 workspaces are rounded
// to nearest (as fla stores them); rows past the tokens of a chunk are written as zeros.
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

/// Eight fp32 values from 16-byte aligned global memory.
__device__ __forceinline__ void load8_f32(const float* src, float (&x)[8]) {
  const float4 lo = __ldg(reinterpret_cast<const float4*>(src));
  const float4 hi = __ldg(reinterpret_cast<const float4*>(src) + 1);
  x[0] = lo.x, x[1] = lo.y, x[2] = lo.z, x[3] = lo.w;
  x[4] = hi.x, x[5] = hi.y, x[6] = hi.z, x[7] = hi.w;
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

/// The same from an fp32 matrix, rounded to bf16.
template <int kRows, int kCols, int NT>
__device__ __forceinline__ void stage_f32(__nv_bfloat16* tile, int ld, const float* src,
                                          int64_t stride, int valid) {
  constexpr int kPerRow = kCols / 8;
  for (int idx = threadIdx.x; idx < kRows * kPerRow; idx += NT) {
    const int i = idx / kPerRow, c = (idx % kPerRow) * 8;
    float x[8] = {};
    if (i < valid) load8_f32(src + i * stride + c, x);
    *reinterpret_cast<uint4*>(tile + i * ld + c) = pack8(x);
  }
}

}  // namespace hypnos::kernels::detail
