// Schedule multipliers at chosen steps (hand-computed) and the boundary checks.
#include "hypnos/train/schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace hypnos::train {
namespace {

TEST(Schedule, ConstantIsOneAtEveryStep) {
  const Schedule s(ScheduleOptions{}, 10);
  for (int64_t step : {0, 1, 9, 10, 1000}) EXPECT_EQ(s.multiplier(step), 1.0);
}

TEST(Schedule, WarmupCosineValuesAtChosenSteps) {
  // total 11, warmup 2, floor 0.1: warmup 0.5, 1; peak at step 2; the cosine spans steps 2..10.
  const Schedule s({ScheduleKind::kWarmupCosine, /*warmup_steps=*/2, /*min_lr_ratio=*/0.1}, 11);
  EXPECT_DOUBLE_EQ(s.multiplier(0), 0.5);
  EXPECT_DOUBLE_EQ(s.multiplier(1), 1.0);
  EXPECT_DOUBLE_EQ(s.multiplier(2), 1.0);
  EXPECT_DOUBLE_EQ(s.multiplier(4), 0.1 + 0.9 * 0.5 * (1.0 + std::cos(std::numbers::pi / 4)));
  EXPECT_DOUBLE_EQ(s.multiplier(6), 0.55);
  EXPECT_DOUBLE_EQ(s.multiplier(10), 0.1);
  EXPECT_DOUBLE_EQ(s.multiplier(50), 0.1);
}

TEST(Schedule, WarmupCosineIsMonotoneAfterThePeak) {
  const Schedule s({ScheduleKind::kWarmupCosine, 5, 0.0}, 100);
  for (int64_t step = 5; step < 99; ++step) {
    EXPECT_GE(s.multiplier(step), s.multiplier(step + 1)) << step;
  }
  EXPECT_EQ(s.multiplier(99), 0.0);
}

TEST(Schedule, NoWarmupStartsAtThePeak) {
  const Schedule s({ScheduleKind::kWarmupCosine, 0, 0.2}, 3);
  EXPECT_DOUBLE_EQ(s.multiplier(0), 1.0);
  EXPECT_DOUBLE_EQ(s.multiplier(1), 0.6);
  EXPECT_DOUBLE_EQ(s.multiplier(2), 0.2);
}

TEST(Schedule, RejectsWarmupNotShorterThanTheRunNamingTheKey) {
  try {
    Schedule({ScheduleKind::kWarmupCosine, 10, 0.1}, 10);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("warmup_steps"), std::string::npos) << what;
    EXPECT_NE(what.find("got 10"), std::string::npos) << what;
  }
  EXPECT_THROW(Schedule(ScheduleOptions{}, 0), std::invalid_argument);
  EXPECT_THROW(Schedule({ScheduleKind::kWarmupCosine, 1, 1.5}, 10), std::invalid_argument);
}

TEST(Schedule, KindNamesAreTheYamlSpellings) {
  using Names = config::EnumNames<ScheduleKind>;
  EXPECT_EQ(Names::names[static_cast<size_t>(ScheduleKind::kConstant)], "constant");
  EXPECT_EQ(Names::names[static_cast<size_t>(ScheduleKind::kWarmupCosine)], "warmup_cosine");
}

}  // namespace
}  // namespace hypnos::train
