// The counter-based RNG of docs/tasks.md section 0: known values, the exact rejection and shuffle
// rules, uniformity, and replay from a key. Known values were computed independently at authoring
// time with a 15-line Python transcription of the docs/tasks.md formulas (arbitrary-precision ints
// masked to 64 bits, run with /work/main/.venv/bin/python); mix(0) is also splitmix64's well-known
// first output for seed 0 and fnv1a64("a") the FNV reference vector.
#include "hypnos/tasks/rng.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

namespace hypnos::tasks {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

std::vector<int64_t> iota_vector(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

TEST(Rng, MixMatchesIndependentReference) {
  EXPECT_EQ(mix(0), 0xe220a8397b1dcdafull);
  EXPECT_EQ(mix(1), 0x910a2dec89025cc1ull);
  EXPECT_EQ(mix(~0ull), 0xe4d971771b652c20ull);
  EXPECT_EQ(mix(12345), 0x22118258a9d111a0ull);
  static_assert(mix(0) == 0xe220a8397b1dcdafull, "mix is usable at compile time");
}

TEST(Rng, Fnv1a64MatchesIndependentReference) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("rule110"), 0xa68df662096ec81full);
  EXPECT_EQ(fnv1a64("depo"), 0xa5ef1b674280db1bull);
  EXPECT_EQ(fnv1a64("gsm_infinite"), 0xd13d1c4093fd26bfull);
}

TEST(Rng, ExampleKeyAndFirstDrawsMatchIndependentReference) {
  const uint64_t key = example_key(7, "depo", Split::kTrain, 3);
  EXPECT_EQ(key, 0x6b0aabba730b8cdcull);
  Stream s(7, "depo", Split::kTrain, 3);
  EXPECT_EQ(s.draw(), 0x114991cf1c394851ull);
  EXPECT_EQ(s.draw(), 0x27cd9e620c70355bull);
  EXPECT_EQ(s.draw(), 0x8d4ebe19798c9ecaull);
  EXPECT_EQ(s.counter(), 3u);
}

TEST(Rng, DrawIsMixOfKeyPlusCounterTimesGolden) {
  const uint64_t key = 0x0123456789abcdefull;
  Stream s(key);
  for (uint64_t j = 0; j < 100; ++j) EXPECT_EQ(s.draw(), mix(key + j * kGolden)) << "j=" << j;
}

TEST(Rng, StreamReplaysFromItsKey) {
  Stream a(42, "rule110", Split::kTest, 9);
  std::vector<uint64_t> first;
  for (int i = 0; i < 50; ++i) first.push_back(a.below(1000 + i));
  Stream b(example_key(42, "rule110", Split::kTest, 9));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(b.below(1000 + i), first[i]);
  EXPECT_EQ(a.counter(), b.counter());
  // Any change of seed, task, split or index gives another stream.
  const uint64_t k = example_key(42, "rule110", Split::kTest, 9);
  EXPECT_NE(k, example_key(43, "rule110", Split::kTest, 9));
  EXPECT_NE(k, example_key(42, "depo", Split::kTest, 9));
  EXPECT_NE(k, example_key(42, "rule110", Split::kTrain, 9));
  EXPECT_NE(k, example_key(42, "rule110", Split::kTest, 10));
}

TEST(Rng, BelowFollowsTheRejectionRuleExactly) {
  // m = 3 * 2^62: t = 2^64 mod m = 2^62, so every draw below 2^62 must be rejected.
  const uint64_t m = 3ull << 62;
  const uint64_t t = 1ull << 62;
  Stream s(77);
  Stream raw(77);
  int rejected = 0;
  for (int i = 0; i < 2000; ++i) {
    const uint64_t got = s.below(m);
    uint64_t x = raw.draw();
    while (x < t) {
      x = raw.draw();
      ++rejected;
    }
    ASSERT_EQ(got, x % m);
    ASSERT_EQ(s.counter(), raw.counter());
  }
  EXPECT_GT(rejected, 300);  // about a quarter of the draws: the path is exercised
}

TEST(Rng, BelowIsInRangeForExtremeModuli) {
  Stream s(5);
  for (uint64_t m : {1ull, 2ull, 3ull, 7ull, 1000ull, (1ull << 63) + 1, ~0ull}) {
    for (int i = 0; i < 200; ++i) ASSERT_LT(s.below(m), m) << "m=" << m;
  }
  EXPECT_EQ(s.below(1), 0u);
}

TEST(Rng, BelowIsUnbiasedForSmallModulus) {
  // Chi-square over 6 cells, 60000 draws: the 0.1% critical value for 5 degrees of freedom is 20.5.
  Stream s(11);
  std::vector<double> count(6, 0.0);
  const int n = 60000;
  for (int i = 0; i < n; ++i) count[s.below(6)] += 1;
  double chi2 = 0;
  for (double c : count) chi2 += (c - n / 6.0) * (c - n / 6.0) / (n / 6.0);
  EXPECT_LT(chi2, 20.5);
}

TEST(Rng, BelowIsUnbiasedWhereNaiveModuloIsNot) {
  // For m = 3 * 2^62 a plain x % m would put half the mass below 2^62; uniform puts a third.
  Stream s(13);
  const uint64_t m = 3ull << 62;
  int low = 0;
  const int n = 30000;
  for (int i = 0; i < n; ++i) low += s.below(m) < (1ull << 62);
  EXPECT_NEAR(static_cast<double>(low) / n, 1.0 / 3.0, 0.015);
}

TEST(Rng, RandintCoversBothEndsInclusive) {
  Stream s(17);
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    const int64_t x = s.randint(-3, 4);
    ASSERT_GE(x, -3);
    ASSERT_LE(x, 4);
    seen.insert(x);
  }
  EXPECT_EQ(seen.size(), 8u);
}

TEST(Rng, RealIsInUnitIntervalWith53Bits) {
  Stream s(19);
  Stream raw(19);
  for (int i = 0; i < 1000; ++i) {
    const double r = s.real();
    ASSERT_GE(r, 0.0);
    ASSERT_LT(r, 1.0);
    ASSERT_EQ(r, std::ldexp(static_cast<double>(raw.draw() >> 11), -53));
  }
  EXPECT_FALSE(s.coin(0.0));
  EXPECT_TRUE(s.coin(1.0));
}

TEST(Rng, ShuffleIsFisherYatesFromTheBack) {
  Stream s(23);
  Stream raw(23);
  std::vector<int64_t> a = iota_vector(37);
  s.shuffle(a);
  std::vector<int64_t> b = iota_vector(37);
  for (size_t i = b.size() - 1; i >= 1; --i) std::swap(b[i], b[raw.below(i + 1)]);
  EXPECT_EQ(a, b);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, iota_vector(37));  // a permutation
  EXPECT_NE(a, iota_vector(37));
}

TEST(Rng, ShuffleOfEmptyAndSingletonIsANoOp) {
  Stream s(29);
  std::vector<int64_t> empty;
  s.shuffle(empty);
  std::vector<int64_t> one{5};
  s.shuffle(one);
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(one, std::vector<int64_t>{5});
  EXPECT_EQ(s.counter(), 0u);
}

TEST(Rng, SampleGivesDistinctMembersByPartialFisherYates) {
  for (size_t k : {0, 1, 5, 20}) {
    Stream s(31 + k);
    Stream raw(31 + k);
    const std::vector<int64_t> got = s.sample(iota_vector(20), k);
    ASSERT_EQ(got.size(), k);
    std::vector<int64_t> b = iota_vector(20);
    for (size_t i = 0; i < k; ++i) std::swap(b[i], b[i + raw.below(20 - i)]);
    b.resize(k);
    EXPECT_EQ(got, b);
    EXPECT_EQ(std::set<int64_t>(got.begin(), got.end()).size(), k);
  }
}

TEST(Rng, SampleIsUniformOverFirstPick) {
  Stream s(37);
  std::vector<int> count(5, 0);
  for (int i = 0; i < 10000; ++i) ++count[s.sample(iota_vector(5), 2)[0]];
  for (int c : count) EXPECT_NEAR(c, 2000, 200);
}

TEST(Rng, WeightedFollowsTheWeightsAndSkipsZeros) {
  Stream s(41);
  std::vector<int> count(3, 0);
  for (int i = 0; i < 20000; ++i) ++count[s.weighted({1.0, 0.0, 3.0})];
  EXPECT_EQ(count[1], 0);
  EXPECT_NEAR(count[0] / 20000.0, 0.25, 0.015);
  // One draw per call: the running-sum rule against real() * total.
  Stream a(43);
  Stream raw(43);
  for (int i = 0; i < 100; ++i) {
    const double target = raw.real() * 6.0;
    const size_t want = target < 1.0 ? 0 : (target < 3.0 ? 1 : 2);
    ASSERT_EQ(a.weighted({1.0, 2.0, 3.0}), want);
  }
}

TEST(Rng, GaussHasUnitMomentsAndUsesTwoDraws) {
  Stream s(47);
  double sum = 0, sum2 = 0;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    const double g = s.gauss();
    sum += g;
    sum2 += g * g;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.03);
  EXPECT_NEAR(sum2 / n, 1.0, 0.03);
  EXPECT_EQ(s.counter(), 2u * n);
}

}  // namespace hypnos::tasks
