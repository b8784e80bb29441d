// Division by a run-time constant with one multiply-high and a shift (Granlund and Montgomery,
// "Division by invariant integers using multiplication", 1994; ATen's IntDivider does the same).
// The element-wise kernels split a flat index into (batch, token, channel) for every element, and a
// 64-bit integer division costs on the order of a hundred instructions on a GPU: four of them were
// most of the work of a convolution over a short window. Plain host/device code, so that a CPU test
// checks it against / and %.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define HYPNOS_DIVMOD_HD __host__ __device__
#else
#define HYPNOS_DIVMOD_HD
#endif

namespace hypnos::kernels {

/// Largest dividend FastDivmod takes (exclusive): the kernels that use it index fewer elements.
inline constexpr int64_t kFastDivmodLimit = int64_t(1) << 31;

/// n / d and n % d for 0 <= n < 2^31 and 1 <= d < 2^31.
struct FastDivmod {
  uint32_t divisor = 1, magic = 1, shift = 0;

  FastDivmod() = default;
  /// Host side: the smallest shift with 2^shift >= d, and magic = floor(2^32 (2^shift - d) / d) +
  /// 1, which fits 32 bits because 2^shift - d < d.
  explicit FastDivmod(int64_t d) : divisor(uint32_t(d)) {
    while (shift < 32 && (uint64_t(1) << shift) < divisor) ++shift;
    magic = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - divisor)) / divisor + 1);
  }

  HYPNOS_DIVMOD_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, magic);
#else
    const uint32_t hi = uint32_t((uint64_t(n) * magic) >> 32);
#endif
    return (hi + n) >> shift;  // hi <= n < 2^31: no overflow
  }
  /// Sets quotient and remainder of n.
  HYPNOS_DIVMOD_HD void divmod(uint32_t n, uint32_t& quotient, uint32_t& remainder) const {
    quotient = div(n);
    remainder = n - quotient * divisor;
  }
};

}  // namespace hypnos::kernels

#undef HYPNOS_DIVMOD_HD
