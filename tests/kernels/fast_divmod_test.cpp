// FastDivmod (kernels/fast_divmod.cuh), the multiply-high division of the convolution kernels'
// index splits, against the integer / and % over the whole range it promises (dividends below
// 2^31, any positive divisor below 2^31). Host code: runs everywhere.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "../../kernels/fast_divmod.cuh"

namespace {

using hypnos::kernels::FastDivmod;

void expect_exact(uint32_t d, uint32_t n) {
  const FastDivmod f(d);
  uint32_t q = 0, r = 0;
  f.divmod(n, q, r);
  ASSERT_EQ(q, n / d) << n << " / " << d;
  ASSERT_EQ(r, n % d) << n << " % " << d;
}

TEST(FastDivmod, MatchesIntegerDivisionOverTheDividendRange) {
  std::vector<uint32_t> divisors = {1u,       2u,
                                    3u,       7u,
                                    24u,      27u,
                                    64u,      100u,
                                    768u,     1000u,
                                    65535u,   65536u,
                                    65537u,   (1u << 30) - 1u,
                                    1u << 30, (1u << 31) - 1u};
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) divisors.push_back(1u + rng() % ((1u << 31) - 1u));
  for (int i = 0; i < 200; ++i) divisors.push_back(1u + rng() % 5000u);
  const uint32_t top = (1u << 31) - 1u;
  for (const uint32_t d : divisors) {
    for (const uint32_t n : {0u, 1u, d - 1u, d, d + 1u, 2u * d - 1u, top - 1u, top}) {
      if (n <= top) expect_exact(d, n);
    }
    for (uint32_t k = 1; k < 64 && uint64_t(k) * d <= top; k *= 3) {  // around multiples of d
      expect_exact(d, k * d - 1u);
      expect_exact(d, k * d);
    }
    for (int i = 0; i < 2000; ++i) expect_exact(d, rng() & top);
  }
}

TEST(FastDivmod, EveryDividendForSmallDivisors) {
  for (uint32_t d = 1; d <= 300; ++d) {
    for (uint32_t n = 0; n < 20000; ++n) expect_exact(d, n);
  }
}

}  // namespace
