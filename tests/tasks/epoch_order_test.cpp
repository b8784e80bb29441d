// EpochOrder: every epoch reads each record once, in an order of its own that is a pure function of
// (seed, records, epoch), pinned to docs/tasks.md's values; the file's order without shuffle; the
// same answers in any order of asking and from several threads at once.
#include "hypnos/tasks/epoch_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

namespace hypnos::tasks {
namespace {

std::vector<size_t> epoch_of(const EpochOrder& order, uint64_t epoch) {
  std::vector<size_t> out;
  for (size_t i = 0; i < order.size(); ++i) out.push_back(order.record(epoch * order.size() + i));
  return out;
}

TEST(EpochOrder, EveryEpochReadsEachRecordOnceInAnOrderOfItsOwn) {
  const EpochOrder order(37, 11, /*shuffle=*/true);
  std::vector<size_t> identity(37);
  std::iota(identity.begin(), identity.end(), size_t{0});
  std::set<std::vector<size_t>> seen;
  for (uint64_t e = 0; e < 6; ++e) {
    std::vector<size_t> epoch = epoch_of(order, e);
    EXPECT_NE(epoch, identity) << "epoch " << e;
    seen.insert(epoch);
    std::sort(epoch.begin(), epoch.end());
    EXPECT_EQ(epoch, identity) << "epoch " << e << " is not a permutation";
  }
  EXPECT_EQ(seen.size(), 6u) << "two epochs share an order";
}

// The values docs/tasks.md gives (a Python reimplementation of the stream computed them): seed 7,
// 10 records, epochs 0 and 1; and seed 8's epoch 0.
TEST(EpochOrder, OrdersArePinnedToTheDocumentedStream) {
  const EpochOrder seven(10, 7, true), eight(10, 8, true);
  EXPECT_EQ(epoch_of(seven, 0), (std::vector<size_t>{7, 3, 8, 2, 9, 6, 4, 0, 1, 5}));
  EXPECT_EQ(epoch_of(seven, 1), (std::vector<size_t>{4, 5, 8, 1, 9, 0, 7, 6, 3, 2}));
  EXPECT_EQ(epoch_of(eight, 0), (std::vector<size_t>{4, 1, 7, 2, 9, 0, 5, 6, 8, 3}));
}

TEST(EpochOrder, WithoutShuffleEveryEpochIsTheFilesOrder) {
  const EpochOrder order(5, 7, /*shuffle=*/false);
  for (uint64_t i = 0; i < 23; ++i) EXPECT_EQ(order.record(i), i % 5);
}

// A resumed run asks from the middle of an epoch; a batch across an epoch boundary asks two
// epochs; a third epoch asked evicts the oldest: the answers never change.
TEST(EpochOrder, AnswersDoNotDependOnTheOrderOfAsking) {
  const EpochOrder reference(13, 3, true);
  std::vector<std::vector<size_t>> want;
  for (uint64_t e = 0; e < 4; ++e) want.push_back(epoch_of(reference, e));
  const EpochOrder order(13, 3, true);
  for (const uint64_t e : {3, 0, 2, 0, 1, 3}) {
    for (size_t i = 13; i-- > 0;) EXPECT_EQ(order.record(e * 13 + i), want[e][i]);
  }
}

TEST(EpochOrder, ThreadsReadingTogetherSeeTheSameOrder) {
  const size_t n = 1000;
  const EpochOrder reference(n, 5, true), shared(n, 5, true);
  std::vector<size_t> got(4 * n);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Each thread walks all four epochs, starting at a different one.
      for (size_t k = 0; k < 4 * n; ++k) {
        const size_t i = (k + t * n) % (4 * n);
        got[i] = shared.record(i);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (size_t i = 0; i < 4 * n; ++i) ASSERT_EQ(got[i], reference.record(i)) << i;
}

TEST(EpochOrder, RefusesAFileOfNoRecords) {
  EXPECT_THROW(EpochOrder(0, 1, true), std::invalid_argument);
}

}  // namespace
}  // namespace hypnos::tasks
