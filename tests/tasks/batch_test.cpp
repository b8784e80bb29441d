// Batches and docs/reliability.md R10: examples are a pure function of (seed, split, index), so a
// generator resumed at any cursor continues exactly, and ranks drawing s*B_global + rank*B_local +
// b are disjoint.
#include "hypnos/tasks/batch.h"

#include <gtest/gtest.h>

#include <set>

#include "hypnos/tasks/task_options.h"

namespace hypnos::tasks {
namespace {

TaskOptions options_for(TaskName name) {
  TaskOptions o;
  o.name = name;
  return o;
}

}  // namespace

TEST(Batch, TensorsAreTheExamplesStacked) {
  auto task = make_task(options_for(TaskName::kDepo), 1);
  const Batch batch = make_batch(*task, Split::kTrain, 40, 3);
  EXPECT_EQ(batch.tokens.sizes(), (std::vector<int64_t>{3, 360}));
  EXPECT_EQ(batch.tokens.scalar_type(), at::kLong);
  EXPECT_EQ(batch.targets.scalar_type(), at::kLong);
  EXPECT_EQ(batch.loss_mask.scalar_type(), at::kBool);
  ASSERT_EQ(batch.examples.size(), 3u);
  for (int64_t b = 0; b < 3; ++b) {
    const Example ex = task->example(Split::kTrain, 40 + b);
    for (int64_t i = 0; i < 360; ++i) {
      ASSERT_EQ(batch.tokens[b][i].item<int64_t>(), ex.tokens[i]);
      ASSERT_EQ(batch.targets[b][i].item<int64_t>(), ex.targets[i]);
      ASSERT_EQ(batch.loss_mask[b][i].item<bool>(), ex.loss_mask[i] == 1);
    }
  }
}

TEST(Batch, ExamplesArePureFunctionsOfSeedSplitAndIndex) {
  for (TaskName name : {TaskName::kRule110, TaskName::kDepo}) {
    auto a = make_task(options_for(name), 77);
    auto b = make_task(options_for(name), 77);  // a fresh generator: no hidden state carried
    const Batch whole = make_batch(*a, Split::kTrain, 0, 24);
    // Resuming at cursor 10 (a new task object, as after a restart) continues the same sequence.
    const Batch resumed = make_batch(*b, Split::kTrain, 10, 14);
    EXPECT_TRUE(at::equal(whole.tokens.narrow(0, 10, 14), resumed.tokens));
    EXPECT_TRUE(at::equal(whole.targets.narrow(0, 10, 14), resumed.targets));
    EXPECT_TRUE(at::equal(whole.loss_mask.narrow(0, 10, 14), resumed.loss_mask));
    for (int i = 0; i < 14; ++i) {
      EXPECT_EQ(whole.examples[10 + i].fields_json, resumed.examples[i].fields_json);
    }
    // Generated out of order and one at a time: the same.
    for (int64_t i : {23, 5, 17}) {
      const Example ex = b->example(Split::kTrain, i);
      EXPECT_EQ(ex.tokens, whole.examples[i].tokens);
    }
  }
}

TEST(Batch, SplitsAndSeedsGiveDifferentExamples) {
  for (TaskName name : {TaskName::kRule110, TaskName::kDepo}) {
    auto task = make_task(options_for(name), 5);
    auto other_seed = make_task(options_for(name), 6);
    const Batch train = make_batch(*task, Split::kTrain, 0, 16);
    const Batch test = make_batch(*task, Split::kTest, 0, 16);
    const Batch reseeded = make_batch(*other_seed, Split::kTrain, 0, 16);
    for (int64_t b = 0; b < 16; ++b) {
      EXPECT_FALSE(at::equal(train.tokens[b], test.tokens[b])) << b;
      EXPECT_FALSE(at::equal(train.tokens[b], reseeded.tokens[b])) << b;
    }
  }
}

TEST(Batch, RanksDrawDisjointIndicesCoveringTheGlobalBatch) {
  const int64_t world = 3, local = 4;
  std::set<uint64_t> seen;
  for (int64_t step = 0; step < 5; ++step) {
    std::set<uint64_t> this_step;
    for (int64_t rank = 0; rank < world; ++rank) {
      const uint64_t first = train_first_index(step, rank, local, world);
      for (int64_t b = 0; b < local; ++b) {
        EXPECT_TRUE(seen.insert(first + b).second) << "index " << first + b << " drawn twice";
        this_step.insert(first + b);
      }
    }
    // Step s covers exactly s*B_global .. (s+1)*B_global - 1: the same examples as one rank with
    // the whole global batch.
    EXPECT_EQ(*this_step.begin(), static_cast<uint64_t>(step * world * local));
    EXPECT_EQ(*this_step.rbegin(), static_cast<uint64_t>((step + 1) * world * local - 1));
  }
  EXPECT_THROW(train_first_index(0, 3, local, world), std::invalid_argument);
}

TEST(Batch, RankBatchesAreSlicesOfTheSingleRankBatch) {
  auto task = make_task(options_for(TaskName::kRule110), 9);
  const Batch global = make_batch(*task, Split::kTrain, train_first_index(2, 0, 8, 1), 8);
  for (int64_t rank = 0; rank < 2; ++rank) {
    const Batch local = make_batch(*task, Split::kTrain, train_first_index(2, rank, 4, 2), 4);
    EXPECT_TRUE(at::equal(global.tokens.narrow(0, 4 * rank, 4), local.tokens)) << rank;
  }
}

TEST(Batch, AddBatchScoresEveryExample) {
  auto task = make_task(options_for(TaskName::kRule110), 3);
  const Batch batch = make_batch(*task, Split::kTest, 0, 8);
  MetricAccumulator metrics;
  // Perfect predictions on the first half, inverted labels on the second.
  at::Tensor predictions = batch.targets.clone();
  predictions.narrow(0, 4, 4).sub_(1).abs_();
  const at::Tensor nll = at::full({8, 100}, 0.25, at::kFloat);
  add_batch(metrics, batch, predictions, nll);
  EXPECT_EQ(metrics.overall().groups, 8);
  EXPECT_DOUBLE_EQ(metrics.overall().exact_accuracy(), 0.5);
  EXPECT_DOUBLE_EQ(metrics.overall().token_accuracy(), 0.5);
  EXPECT_DOUBLE_EQ(metrics.buckets().at("t=12").mean_ce(), 0.25);
  EXPECT_THROW(add_batch(metrics, batch, predictions.narrow(1, 0, 99), nll), std::invalid_argument);
}

TEST(Batch, CollateRefusesRaggedExamples) {
  auto task = make_task(options_for(TaskName::kRule110), 3);
  std::vector<Example> examples{task->example(Split::kTest, 0), task->example(Split::kTest, 1)};
  examples[1].tokens.pop_back();
  EXPECT_THROW(collate(examples), std::invalid_argument);
  EXPECT_THROW(make_batch(*task, Split::kTest, 0, 0), std::invalid_argument);
}

TEST(Batch, CollatePadsShorterExamplesToTheLongestWithThePadIdAndNoLoss) {
  Example a{{5, 6, 7}, {6, 7, 9}, {0, 1, 1}, {{"all", {1, 2}, {}}}, ""};
  Example b{{5, 6}, {6, 9}, {1, 0}, {{"all", {0}, {}}}, ""};
  const Batch batch = collate({a, b}, /*pad_id=*/9);
  EXPECT_EQ(batch.tokens.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(batch.tokens[1][2].item<int64_t>(), 9);
  EXPECT_EQ(batch.targets[1][2].item<int64_t>(), 9);
  EXPECT_FALSE(batch.loss_mask[1][2].item<bool>());
  EXPECT_TRUE(batch.loss_mask[1][0].item<bool>());
  EXPECT_EQ(batch.loss_mask.sum().item<int64_t>(), 3);
}

}  // namespace hypnos::tasks
