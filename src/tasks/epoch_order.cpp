// EpochOrder: one seeded permutation of a file's records per epoch, drawn once and kept while the
// trainer reads that epoch.
#include "hypnos/tasks/epoch_order.h"

#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "hypnos/tasks/rng.h"

namespace hypnos::tasks {

EpochOrder::EpochOrder(size_t records, uint64_t seed, bool shuffle)
    : records_(records), seed_(seed), shuffle_(shuffle) {
  if (records == 0) throw std::invalid_argument("EpochOrder: a file of no records");
  if (records > std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument("EpochOrder: " + std::to_string(records) +
                                " records, more than 2^32 - 1");
  }
}

size_t EpochOrder::record(uint64_t index) const {
  const size_t position = static_cast<size_t>(index % records_);
  if (!shuffle_) return position;
  return (*permutation(index / records_))[position];
}

EpochOrder::Permutation EpochOrder::permutation(uint64_t epoch) const {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [e, p] : recent_) {
      if (e == epoch) return p;
    }
  }
  // Drawn outside the lock (128,000 records take about a millisecond); two threads that both miss
  // draw the same permutation, and the second one's copy is dropped.
  auto order = std::make_shared<std::vector<uint32_t>>(records_);
  std::iota(order->begin(), order->end(), uint32_t{0});
  Stream(seed_, "epoch_order", Split::kTrain, epoch).shuffle(*order);
  const std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [e, p] : recent_) {
    if (e == epoch) return p;
  }
  recent_.emplace_back(epoch, std::move(order));
  if (recent_.size() > 2) recent_.erase(recent_.begin());
  return recent_.back().second;
}

}  // namespace hypnos::tasks
