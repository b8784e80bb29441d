// The independent GSM-Infinite solver: the three samples of docs/tasks.md 3.2 (real output of the
// original generator), hand-made problems whose values and op counts are worked out in comments,
// and refusals of malformed or unsolvable problems.
#include "testing/gsm_infinite_solver.h"

#include <gtest/gtest.h>

#include <string>

namespace hypnos::tasks {

TEST(GsmSolver, Sample1MediumForwardOp2) {
  const GsmSolution s = solve_gsm(
      "The number of adult bear in Bundle Ranch equals 3 times the number of adult wolf in Bundle "
      "Ranch. The number of adult bear in Hamilton Farm equals 2. The number of adult wolf in "
      "Bundle Ranch equals 2. ",
      "What is the total number of adult animals in Hamilton Farm?");
  EXPECT_EQ(s.answer, 2);
  EXPECT_EQ(s.op, 2);
  EXPECT_FALSE(s.reverse);
}

TEST(GsmSolver, Sample2MediumReverseOp5) {
  const GsmSolution s = solve_gsm(
      "The number of public highschool in Evervale City equals 4 plus the number of private "
      "middle school in Evervale City. The number of private middle school in Evervale City "
      "exists, and its number is greater than 0. The total number of schools in Evervale City "
      "equals 12. ",
      "How many private middle school does Evervale City have?");
  EXPECT_EQ(s.answer, 4);  // x + 4 + x = 12
  EXPECT_EQ(s.op, 5);
  EXPECT_TRUE(s.reverse);
}

TEST(GsmSolver, Sample3HardForwardOp4) {
  const GsmSolution s = solve_gsm(
      "The number of adult parrot in Maple Creek equals 2. The average number of newborn children "
      "per adult parrot in Cedar Valley equals the total number of adult animals in Cedar Valley. "
      "The average number of newborn children per adult parrot in Maple Creek equals 2. The "
      "number of adult parrot in Cedar Valley equals 1 plus the average number of newborn children "
      "per adult parrot in Maple Creek. ",
      "What is the total number of adult animals in Cedar Valley?");
  EXPECT_EQ(s.answer, 3);  // 1 + 2; the second sentence depends on the question and is unused
  EXPECT_EQ(s.op, 4);
}

TEST(GsmSolver, Cat2SumsCountTimesAverageWithDifferencesAndLongSums) {
  // bear = 3, avg bear = 2, wolf = 3 - 2 = 1, avg wolf = 3 + 2 + 1 = 6; CAT2 = 3*2 + 1*6 = 12.
  // op = CAT2 2*2 + bear 1 + wolf 2 + avg bear 1 + avg wolf 3 = 11.
  const std::string problem =
      "The number of adult bear in South Zoo equals 3. The number of adult wolf in South Zoo "
      "equals the difference between the number of adult bear in South Zoo and the average number "
      "of newborn children per adult bear in South Zoo. The average number of newborn children per "
      "adult bear in South Zoo equals 2. The average number of newborn children per adult wolf in "
      "South Zoo equals the sum of the number of adult bear in South Zoo, the average number of "
      "newborn children per adult bear in South Zoo, and the number of adult wolf in South Zoo. ";
  const GsmSolution s =
      solve_gsm(problem, "What is the total number of newborn animal children in South Zoo?");
  EXPECT_EQ(s.answer, 12);
  EXPECT_EQ(s.op, 11);
  // CAT1 of the same top sums the counts only: 3 + 1 = 4, op = 2 + 1 + 2 + 1 = 6.
  const GsmSolution c =
      solve_gsm(problem, "What is the total number of adult animals in South Zoo?");
  EXPECT_EQ(c.answer, 4);
  EXPECT_EQ(c.op, 6);
  const GsmSolution w = solve_gsm(problem, "How many adult wolf does South Zoo have?");
  EXPECT_EQ(w.answer, 1);
  EXPECT_EQ(w.op, 4);  // wolf 2 + bear 1 + avg bear 1
}

TEST(GsmSolver, ReverseInstanceObservedBySecondSentenceInEitherOrder) {
  const std::string x =
      "The number of adult fox in Pine Ridge exists, and its number is greater "
      "than 0. ";
  const std::string def =
      "The number of adult deer in Pine Ridge equals 3 times the number of "
      "adult fox in Pine Ridge. ";
  const std::string obs = "The number of adult deer in Pine Ridge equals 12. ";
  for (const std::string& problem : {x + def + obs, obs + x + def}) {
    const GsmSolution s = solve_gsm(problem, "How many adult fox does Pine Ridge have?");
    EXPECT_EQ(s.answer, 4);
    EXPECT_EQ(s.op, 3);  // deer: one ref + a number; x: 1
    EXPECT_TRUE(s.reverse);
  }
}

TEST(GsmSolver, UnusedDistractorsChangeNothing) {
  const GsmSolution s = solve_gsm(
      "The number of adult bear in Hamilton Farm equals 2. The number of adult angelfish in "
      "Louvre Museum equals 2 plus the number of adult bear in Hamilton Farm. The number of "
      "adult koi in Louvre Museum equals the sum of the number of adult angelfish in Louvre "
      "Museum and the number of adult bear in Hamilton Farm. ",
      "What is the total number of adult animals in Hamilton Farm?");
  EXPECT_EQ(s.answer, 2);
  EXPECT_EQ(s.op, 2);
}

TEST(GsmSolver, RefusesUnsolvableReverseProblems) {
  const std::string x =
      "The number of adult fox in Pine Ridge exists, and its number is greater "
      "than 0. ";
  // 3x = 13 has no integer root.
  EXPECT_THROW(solve_gsm(x + "The number of adult deer in Pine Ridge equals 3 times the number of "
                             "adult fox in Pine Ridge. The number of adult deer in Pine Ridge "
                             "equals 13. ",
                         "How many adult fox does Pine Ridge have?"),
               std::runtime_error);
  // CAT2 = x * x: degree 2.
  EXPECT_THROW(solve_gsm(x + "The average number of newborn children per adult fox in Pine Ridge "
                             "equals the number of adult fox in Pine Ridge. The total number of "
                             "newborn animal children in Pine Ridge equals 16. ",
                         "How many adult fox does Pine Ridge have?"),
               std::runtime_error);
}

TEST(GsmSolver, RefusesCyclesUndefinedReferencesAndBadSentences) {
  try {
    solve_gsm(
        "The number of adult owl in Pine Ridge equals 1 plus the number of adult crow in "
        "Pine Ridge. The number of adult crow in Pine Ridge equals the number of adult owl "
        "in Pine Ridge. ",
        "How many adult owl does Pine Ridge have?");
    FAIL() << "expected a cycle error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cycle"), std::string::npos) << e.what();
  }
  EXPECT_THROW(solve_gsm("The number of adult owl in Pine Ridge equals the number of adult crow "
                         "in Pine Ridge. ",
                         "How many adult owl does Pine Ridge have?"),
               std::runtime_error);
  try {
    solve_gsm("The number of adult owl in Pine Ridge is 3. ",
              "How many adult owl does Pine Ridge have?");
    FAIL() << "expected a parse error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("adult owl in Pine Ridge is 3"), std::string::npos);
  }
  EXPECT_THROW(solve_gsm("The number of adult owl in Pine Ridge equals 3. ", "Why?"),
               std::invalid_argument);
}

}  // namespace hypnos::tasks
