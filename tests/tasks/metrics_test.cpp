// The metric accumulator: exact accuracy per group, token accuracy and mean CE per position, per
// bucket and overall, on hand-made examples whose numbers are worked out in the comments.
#include "hypnos/tasks/metrics.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hypnos/tasks/depo.h"

namespace hypnos::tasks {
namespace {

/// T = 6; groups "a" at {1, 2} and "b" at {4}; targets 10, 11, 12, 13, 14, 15.
Example two_group_example() {
  Example ex;
  ex.tokens = {0, 1, 2, 3, 4, 5};
  ex.targets = {10, 11, 12, 13, 14, 15};
  ex.loss_mask = {0, 1, 1, 0, 1, 0};
  ex.groups = {{"a", {1, 2}}, {"b", {4}}};
  return ex;
}

}  // namespace

TEST(Metrics, ExactNeedsEveryPositionOfAGroup) {
  MetricAccumulator m;
  const Example ex = two_group_example();
  // Position 1 right, 2 wrong, 4 right; unscored positions are wrong and huge, and must not count.
  m.add(ex, {0, 11, 99, 0, 14, 0}, {50.0, 0.5, 1.5, 50.0, 1.0, 50.0});
  EXPECT_EQ(m.overall().groups, 2);
  EXPECT_EQ(m.overall().exact, 1);
  EXPECT_EQ(m.overall().positions, 3);
  EXPECT_EQ(m.overall().correct, 2);
  EXPECT_DOUBLE_EQ(m.overall().mean_ce(), 1.0);  // (0.5 + 1.5 + 1.0) / 3
  EXPECT_DOUBLE_EQ(m.overall().exact_accuracy(), 0.5);
  EXPECT_DOUBLE_EQ(m.buckets().at("a").exact_accuracy(), 0.0);
  EXPECT_DOUBLE_EQ(m.buckets().at("a").token_accuracy(), 0.5);
  EXPECT_DOUBLE_EQ(m.buckets().at("a").mean_ce(), 1.0);
  EXPECT_DOUBLE_EQ(m.buckets().at("b").exact_accuracy(), 1.0);
  EXPECT_DOUBLE_EQ(m.buckets().at("b").mean_ce(), 1.0);
}

TEST(Metrics, AccumulatesAcrossExamplesAndMerges) {
  const Example ex = two_group_example();
  MetricAccumulator first, second;
  first.add(ex, {0, 11, 12, 0, 14, 0}, {0, 0.25, 0.25, 0, 0.5, 0});  // all right
  second.add(ex, {0, 0, 0, 0, 0, 0}, {0, 2.0, 2.0, 0, 3.0, 0});      // all wrong
  first.merge(second);
  EXPECT_EQ(first.overall().groups, 4);
  EXPECT_DOUBLE_EQ(first.overall().exact_accuracy(), 0.5);
  EXPECT_DOUBLE_EQ(first.overall().token_accuracy(), 0.5);
  EXPECT_DOUBLE_EQ(first.overall().mean_ce(), 8.0 / 6.0);
  EXPECT_EQ(first.buckets().at("b").groups, 2);
  const auto json = nlohmann::json::parse(first.to_json());
  EXPECT_DOUBLE_EQ(json["overall"]["exact_accuracy"].get<double>(), 0.5);
  EXPECT_EQ(json["buckets"]["a"]["groups"], 2);
}

TEST(Metrics, DepoQueriesAreScoredPerHopCount) {
  DepoTask task(DepoOptions{}, 0);
  DepoDraw d;
  d.names = {{7, 62}, {55}, {12, 80}, {91}, {3, 51}};
  d.perm = {3, 0, 4, 2, 1};
  d.queries = {{2, 3}, {1, 1}, {4, 7}, {0, 16}, {3, 5}};
  const Example ex = task.layout(d);
  std::vector<int64_t> predictions = ex.targets;  // teacher-forced argmax all right ...
  predictions[309] = 13;                          // ... except the second piece of query 2's answer
  MetricAccumulator m;
  m.add(ex, predictions, std::vector<double>(ex.targets.size(), 0.1));
  EXPECT_EQ(m.overall().groups, 5);
  EXPECT_EQ(m.overall().exact, 4);
  EXPECT_EQ(m.overall().positions, 7);
  EXPECT_EQ(m.buckets().at("k=1").exact, 0);
  EXPECT_EQ(m.buckets().at("k=1").correct, 1);
  EXPECT_EQ(m.buckets().at("k=16").exact, 1);
  EXPECT_NEAR(m.overall().mean_ce(), 0.1, 1e-12);
}

TEST(Metrics, TagsCountTowardFurtherBuckets) {
  Example ex = two_group_example();
  ex.groups[0].tags = {"mode=reverse", "template=zoo"};
  MetricAccumulator m;
  m.add(ex, {0, 11, 12, 0, 0, 0}, {0, 1.0, 3.0, 0, 5.0, 0});
  EXPECT_EQ(m.buckets().at("mode=reverse").groups, 1);
  EXPECT_DOUBLE_EQ(m.buckets().at("template=zoo").mean_ce(), 2.0);
  EXPECT_EQ(m.buckets().at("template=zoo").exact, 1);
  EXPECT_EQ(m.overall().groups, 2);  // tags never double-count the overall figures
}

TEST(Metrics, RefusesPredictionsOfTheWrongLength) {
  MetricAccumulator m;
  EXPECT_THROW(m.add(two_group_example(), {1, 2}, {0.0, 0.0}), std::invalid_argument);
  EXPECT_EQ(m.overall().groups, 0);
  EXPECT_DOUBLE_EQ(m.overall().exact_accuracy(), 0.0);  // empty: no division by zero
}

}  // namespace hypnos::tasks
