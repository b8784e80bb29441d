// Accuracy and loss per difficulty bucket for any task: fed each example's argmax predictions and
// target NLLs, it scores the example's ScoreGroups (exact = every position of a group right).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "hypnos/tasks/task.h"

namespace hypnos::tasks {

/// Counts of one bucket (or of all buckets together).
struct BucketMetrics {
  int64_t groups = 0;     ///< scored groups (Rule 110 examples, Depo queries, GSM problems)
  int64_t exact = 0;      ///< groups whose every position was argmax-correct
  int64_t positions = 0;  ///< scored positions
  int64_t correct = 0;    ///< argmax-correct positions
  double nll_sum = 0.0;   ///< sum of -log p(target) over scored positions

  double exact_accuracy() const { return groups ? double(exact) / groups : 0.0; }
  double token_accuracy() const { return positions ? double(correct) / positions : 0.0; }
  double mean_ce() const { return positions ? nll_sum / positions : 0.0; }
  void merge(const BucketMetrics& other);
};

class MetricAccumulator {
 public:
  /// predictions[i]: argmax id at position i; nll[i]: -log p(targets[i]) at position i. Both have
  /// the example's length T; only the groups' positions are read.
  void add(const Example& example, const std::vector<int64_t>& predictions,
           const std::vector<double>& nll);
  /// Adds another accumulator's counts (e.g. from another rank or another eval shard).
  void merge(const MetricAccumulator& other);

  const BucketMetrics& overall() const { return overall_; }
  /// Keyed by ScoreGroup::bucket, e.g. "k=4".
  const std::map<std::string, BucketMetrics>& buckets() const { return buckets_; }
  /// {"overall": {...}, "buckets": {"k=1": {...}, ...}} with exact_accuracy, token_accuracy,
  /// mean_ce and groups in each object.
  std::string to_json() const;

 private:
  BucketMetrics overall_;
  std::map<std::string, BucketMetrics> buckets_;
};

}  // namespace hypnos::tasks
