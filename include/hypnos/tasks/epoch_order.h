// The order in which training reads the records of a file (task.token_file, task.data_file), epoch
// by epoch (docs/tasks.md 3.5): what a task backed by a file of its own can use too.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace hypnos::tasks {

/// Training index i reads record order(i / n)[i % n] of a file of n records: each epoch e = i / n
/// is one pass over every record, in the file's order (shuffle off) or in a permutation of its own,
/// a Fisher-Yates shuffle drawn from Stream(seed, "epoch_order", Split::kTrain, e). A pure function
/// of (seed, n, i), so a resumed run and every rank read the same records. Thread-safe (a batch's
/// examples are built in parallel); keeps the permutations of the two epochs last asked for.
class EpochOrder {
 public:
  EpochOrder(size_t records, uint64_t seed, bool shuffle);
  size_t record(uint64_t index) const;
  size_t size() const { return records_; }

 private:
  using Permutation = std::shared_ptr<const std::vector<uint32_t>>;
  Permutation permutation(uint64_t epoch) const;

  size_t records_;
  uint64_t seed_;
  bool shuffle_;
  mutable std::mutex mutex_;
  mutable std::vector<std::pair<uint64_t, Permutation>> recent_;  // at most two, newest last
};

}  // namespace hypnos::tasks
