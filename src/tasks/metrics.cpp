// Per-bucket exact accuracy, token accuracy and mean CE over ScoreGroups (docs/tasks.md 1, 2, 3.4).
#include "hypnos/tasks/metrics.h"

#include <nlohmann/json.hpp>

namespace hypnos::tasks {

void BucketMetrics::merge(const BucketMetrics& o) {
  groups += o.groups;
  exact += o.exact;
  positions += o.positions;
  correct += o.correct;
  nll_sum += o.nll_sum;
}

void MetricAccumulator::add(const Example& example, const std::vector<int64_t>& predictions,
                            const std::vector<double>& nll) {
  const size_t t = example.targets.size();
  if (predictions.size() != t || nll.size() != t) {
    throw std::invalid_argument("MetricAccumulator::add: predictions has " +
                                std::to_string(predictions.size()) + " and nll " +
                                std::to_string(nll.size()) + " entries, expected the example's " +
                                std::to_string(t));
  }
  for (const ScoreGroup& g : example.groups) {
    BucketMetrics m;
    m.groups = 1;
    m.positions = static_cast<int64_t>(g.positions.size());
    for (int64_t pos : g.positions) {
      if (pos < 0 || static_cast<size_t>(pos) >= t) {
        throw std::invalid_argument("MetricAccumulator::add: group position " +
                                    std::to_string(pos) + " outside [0, " + std::to_string(t) +
                                    ")");
      }
      m.correct += predictions[pos] == example.targets[pos];
      m.nll_sum += nll[pos];
    }
    m.exact = m.correct == m.positions;
    overall_.merge(m);
    buckets_[g.bucket].merge(m);
    for (const std::string& tag : g.tags) buckets_[tag].merge(m);
  }
}

void MetricAccumulator::merge(const MetricAccumulator& other) {
  overall_.merge(other.overall_);
  for (const auto& [bucket, m] : other.buckets_) buckets_[bucket].merge(m);
}

std::string MetricAccumulator::to_json() const {
  auto one = [](const BucketMetrics& m) {
    return nlohmann::ordered_json{{"exact_accuracy", m.exact_accuracy()},
                                  {"token_accuracy", m.token_accuracy()},
                                  {"mean_ce", m.mean_ce()},
                                  {"groups", m.groups}};
  };
  nlohmann::ordered_json out;
  out["overall"] = one(overall_);
  out["buckets"] = nlohmann::ordered_json::object();
  for (const auto& [bucket, m] : buckets_) out["buckets"][bucket] = one(m);
  return out.dump();
}

}  // namespace hypnos::tasks
