// Rule 110 (docs/tasks.md section 1): the layout, the draw order, and labels checked against the
// tensor formulation of bench/reference/sleep_reference.py (table lookup over rolled neighbours).
#include "hypnos/tasks/rule110.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace hypnos::tasks {
namespace {

/// Port of rule110_batch's evolution: x = table[(roll(x, 1) << 2) | (x << 1) | roll(x, -1)]
/// (periodic); the zero boundary pads with a 0 cell on each side instead of rolling.
std::vector<int64_t> reference_labels(const std::vector<int64_t>& cells, int64_t n_states,
                                      int64_t width, int64_t t, Rule110Boundary boundary) {
  at::Tensor x = at::tensor(cells, at::kLong).view({n_states, width});
  std::vector<int64_t> bits;
  for (int p = 0; p < 8; ++p) bits.push_back((110 >> p) & 1);
  const at::Tensor table = at::tensor(bits, at::kLong);
  for (int64_t s = 0; s < t; ++s) {
    at::Tensor left, right;
    if (boundary == Rule110Boundary::kPeriodic) {
      left = at::roll(x, 1, -1);
      right = at::roll(x, -1, -1);
    } else {
      const at::Tensor padded = at::constant_pad_nd(x, {1, 1}, 0);
      left = padded.narrow(1, 0, width);
      right = padded.narrow(1, 2, width);
    }
    x = table.index({(left * 4 + x * 2 + right).flatten()}).view({n_states, width});
  }
  const at::Tensor y = x.select(1, 0).contiguous();
  return std::vector<int64_t>(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + n_states);
}

}  // namespace

TEST(Rule110, SingleCellGrowsLeftwardAndWrapsWhenPeriodic) {
  EXPECT_EQ(rule110_step({0, 0, 0, 1, 0, 0}, Rule110Boundary::kZero),
            (std::vector<uint8_t>{0, 0, 1, 1, 0, 0}));
  EXPECT_EQ(rule110_step({1, 0, 0, 0, 0}, Rule110Boundary::kPeriodic),
            (std::vector<uint8_t>{1, 0, 0, 0, 1}));
  EXPECT_EQ(rule110_step({1, 0, 0, 0, 0}, Rule110Boundary::kZero),
            (std::vector<uint8_t>{1, 0, 0, 0, 0}));
  EXPECT_EQ(rule110_step({1, 1, 1, 1, 1}, Rule110Boundary::kPeriodic),
            (std::vector<uint8_t>{0, 0, 0, 0, 0}));  // 111 -> 0
}

TEST(Rule110, DefaultLayoutPutsCellsThenQueriesAndScoresOnlyQueries) {
  Rule110Task task(Rule110Options{}, 3);
  const Example ex = task.example(Split::kTrain, 5);
  ASSERT_EQ(ex.tokens.size(), 100u);
  ASSERT_EQ(ex.targets.size(), 100u);
  ASSERT_EQ(ex.loss_mask.size(), 100u);
  for (int i = 0; i < 96; ++i) {
    EXPECT_TRUE(ex.tokens[i] == 0 || ex.tokens[i] == 1);
    EXPECT_EQ(ex.loss_mask[i], 0);
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ex.tokens[96 + i], 2 + i);
    EXPECT_EQ(ex.loss_mask[96 + i], 1);
    EXPECT_TRUE(ex.targets[96 + i] == 0 || ex.targets[96 + i] == 1);
  }
  ASSERT_EQ(ex.groups.size(), 1u);
  EXPECT_EQ(ex.groups[0].bucket, "t=12");
  EXPECT_EQ(ex.groups[0].positions, (std::vector<int64_t>{96, 97, 98, 99}));
}

TEST(Rule110, CellsAreBelow2DrawsInTokenOrder) {
  Rule110Task task(Rule110Options{}, 99);
  for (Split split : {Split::kTrain, Split::kTest}) {
    const Example ex = task.example(split, 17);
    Stream s(99, "rule110", split, 17);
    for (int i = 0; i < 96; ++i) ASSERT_EQ(ex.tokens[i], static_cast<int64_t>(s.below(2)));
  }
}

TEST(Rule110, LabelsMatchTheTensorReferenceForBothBoundaries) {
  for (Rule110Boundary boundary : {Rule110Boundary::kPeriodic, Rule110Boundary::kZero}) {
    for (int64_t t : {0, 1, 4, 7, 32}) {
      for (auto [n_states, width] : {std::pair<int64_t, int64_t>{4, 24}, {3, 11}}) {
        Rule110Options o;
        o.t = t;
        o.boundary = boundary;
        o.n_states = n_states;
        o.width = width;
        Rule110Task task(o, 7);
        ASSERT_EQ(task.seq_len(), n_states * (width + 1));
        ASSERT_EQ(task.vocab_size(), 2 + n_states);
        for (uint64_t index = 0; index < 20; ++index) {
          const Example ex = task.example(Split::kTest, index);
          const std::vector<int64_t> cells(ex.tokens.begin(), ex.tokens.begin() + n_states * width);
          const auto want = reference_labels(cells, n_states, width, t, boundary);
          for (int64_t i = 0; i < n_states; ++i) {
            ASSERT_EQ(ex.targets[n_states * width + i], want[i])
                << "t=" << t << " index=" << index << " string " << i;
          }
        }
      }
    }
  }
}

// A record carries every option that decides its labels: they can be recomputed from it alone.
TEST(Rule110, FieldsJsonCarriesStatesTBoundaryAndLabels) {
  for (Rule110Boundary boundary : {Rule110Boundary::kPeriodic, Rule110Boundary::kZero}) {
    Rule110Options o;
    o.t = 7;
    o.boundary = boundary;
    Rule110Task task(o, 1);
    const Example ex = task.example(Split::kTest, 0);
    const auto fields = nlohmann::json::parse(ex.fields_json);
    ASSERT_EQ(fields["states"].size(), 4u);
    EXPECT_EQ(fields["t"], 7);
    EXPECT_EQ(fields["boundary"], boundary == Rule110Boundary::kPeriodic ? "periodic" : "zero");
    std::vector<int64_t> cells;
    for (int i = 0; i < 4; ++i) {
      const std::string state = fields["states"][i];
      ASSERT_EQ(state.size(), 24u);
      for (int j = 0; j < 24; ++j) {
        EXPECT_EQ(state[j] - '0', ex.tokens[24 * i + j]);
        cells.push_back(state[j] - '0');
      }
      EXPECT_EQ(fields["labels"][i], ex.targets[96 + i]);
    }
    const auto recomputed = reference_labels(
        cells, 4, 24, fields["t"].get<int64_t>(),
        fields["boundary"] == "periodic" ? Rule110Boundary::kPeriodic : Rule110Boundary::kZero);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(fields["labels"][i], recomputed[i]);
  }
}

TEST(Rule110, LabelRatesMatchTheMeasuredChanceFigures) {
  // docs/tasks.md section 1: P(label = 1) is 0.56 at t = 32 (periodic); above 0.99 with zero, t
  // >= 8.
  auto rate = [](int64_t t, Rule110Boundary boundary) {
    Rule110Options o;
    o.t = t;
    o.boundary = boundary;
    Rule110Task task(o, 2024);
    int64_t ones = 0, total = 0;
    for (uint64_t index = 0; index < 3000; ++index) {
      const Example ex = task.example(Split::kTrain, index);
      for (int i = 96; i < 100; ++i, ++total) ones += ex.targets[i];
    }
    return double(ones) / total;
  };
  EXPECT_NEAR(rate(32, Rule110Boundary::kPeriodic), 0.56, 0.015);
  EXPECT_NEAR(rate(0, Rule110Boundary::kPeriodic), 0.50, 0.015);
  EXPECT_GT(rate(8, Rule110Boundary::kZero), 0.99);
}

TEST(Rule110, TokenNamesAreCellsAndQueries) {
  Rule110Task task(Rule110Options{}, 0);
  EXPECT_EQ(task.token_name(1), "1");
  EXPECT_EQ(task.token_name(2), "Q0");
  EXPECT_EQ(task.token_name(5), "Q3");
  EXPECT_EQ(task.token_name(6), "<6?>");
}

}  // namespace hypnos::tasks
