// GSM-Infinite layout (docs/tasks.md 3.4): BOS, question, problem, `answer :`, N, scored only at
// `:`; and the official-data loader: answers from "Answer: N.", bad answers dropped and counted,
// malformed lines named by path:line.
#include "hypnos/tasks/gsm_infinite.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hypnos/tasks/gsm_infinite_templates.h"
#include "testing/gsm_infinite_solver.h"

namespace hypnos::tasks {
namespace {

GsmProblem sample1() {
  GsmProblem p;
  p.question = "What is the total number of adult animals in Hamilton Farm?";
  p.problem =
      "The number of adult bear in Bundle Ranch equals 3 times the number of adult wolf in Bundle "
      "Ranch. The number of adult bear in Hamilton Farm equals 2. The number of adult wolf in "
      "Bundle Ranch equals 2. ";
  p.answer = 2;
  p.op = 2;
  p.mode = "forward";
  p.template_name = "zoo";
  p.d = 2;
  return p;
}

}  // namespace

TEST(GsmLayout, Sample1ReadsBosQuestionProblemAnswerAndScoresOnlyTheColon) {
  const GsmTokenizer tok = GsmTokenizer::from_texts(gsm_core_texts());
  int64_t unknown = 0;
  const Example ex = gsm_layout(sample1(), tok, 3392, &unknown);
  EXPECT_EQ(unknown, 0);
  ASSERT_EQ(ex.tokens.size(), 3392u);
  int64_t used = 0;
  while (ex.tokens[used] != GsmTokenizer::kPad) ++used;
  for (size_t i = used; i < ex.tokens.size(); ++i) ASSERT_EQ(ex.tokens[i], GsmTokenizer::kPad);
  EXPECT_EQ(tok.decode(std::vector<int64_t>(ex.tokens.begin(), ex.tokens.begin() + used)),
            "<bos> what is the total number of adult animals in hamilton farm ? the number of "
            "adult bear in bundle ranch equals 3 times the number of adult wolf in bundle ranch . "
            "the number of adult bear in hamilton farm equals 2 . the number of adult wolf in "
            "bundle ranch equals 2 . answer : 2");
  const int64_t colon = used - 2;
  for (int64_t i = 0; i < 3392; ++i) ASSERT_EQ(ex.loss_mask[i], i == colon ? 1 : 0) << i;
  EXPECT_EQ(ex.targets[colon], GsmTokenizer::kNumberBase + 2);
  for (size_t i = 0; i + 1 < ex.tokens.size(); ++i) ASSERT_EQ(ex.targets[i], ex.tokens[i + 1]);
  ASSERT_EQ(ex.groups.size(), 1u);
  EXPECT_EQ(ex.groups[0].bucket, "op=2");
  EXPECT_EQ(ex.groups[0].tags, (std::vector<std::string>{"mode=forward", "template=zoo"}));
  const auto fields = nlohmann::json::parse(ex.fields_json);
  EXPECT_EQ(fields["answer"], 2);
  EXPECT_EQ(fields["problem"], sample1().problem);
  EXPECT_EQ(fields["d"], 2);
}

TEST(GsmLayout, RefusesTooLongProblemsAndAnswersAboveOneToken) {
  const GsmTokenizer tok = GsmTokenizer::from_texts(gsm_core_texts());
  try {
    gsm_layout(sample1(), tok, 20);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("task.max_len = 20"), std::string::npos) << e.what();
  }
  GsmProblem p = sample1();
  p.answer = 1001;
  EXPECT_THROW(gsm_layout(p, tok, 3392), std::invalid_argument);
}

class GsmOfficialFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "hypnos_gsm_official_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
            std::to_string(::getpid()) + ".jsonl";
  }
  void TearDown() override { std::remove(path_.c_str()); }
  std::string write(const std::string& text) {
    std::ofstream(path_) << text;
    return path_;
  }
  std::string path_;
};

TEST_F(GsmOfficialFile, AnswersComeFromTheLastAnswerMarkAndBadOnesAreDropped) {
  nlohmann::json a{{"problem", sample1().problem},
                   {"question", sample1().question},
                   {"solution",
                    "Define adult bear in Hamilton Farm as V; so V = 2. Answer: 1. "
                    "Define total number of adult animals in Hamilton Farm as z; so "
                    "z = V = 2. Answer: 2."},
                   {"op", 2},
                   {"template", "crazy_zootopia"},
                   {"mode", "normalforward"},
                   {"d", 2},
                   {"id", 7}};
  nlohmann::json b = a;
  b["op"] = "5";
  b["mode"] = "forwardreverse";
  b["solution"] = "... Answer: 4.";
  nlohmann::json too_big = a;
  too_big["solution"] = "Answer: 1001.";
  nlohmann::json not_int = a;
  not_int["solution"] = "Answer: 2.5.";
  const GsmOfficialData data = read_gsm_official_jsonl(
      write(a.dump() + "\n" + too_big.dump() + "\n\n" + b.dump() + "\n" + not_int.dump() + "\n"));
  ASSERT_EQ(data.problems.size(), 2u);
  EXPECT_EQ(data.dropped, 2);
  EXPECT_EQ(data.problems[0].answer, 2);
  EXPECT_EQ(data.problems[0].mode, "forward");
  EXPECT_EQ(data.problems[0].template_name, "zoo");
  EXPECT_EQ(data.problems[1].answer, 4);
  EXPECT_EQ(data.problems[1].op, 5);
  EXPECT_EQ(data.problems[1].mode, "reverse");
  // The loaded text is the original's: the independent solver agrees with its answer and op.
  const GsmSolution s = solve_gsm(data.problems[0].problem, data.problems[0].question);
  EXPECT_EQ(s.answer, data.problems[0].answer);
  EXPECT_EQ(s.op, data.problems[0].op);
}

TEST_F(GsmOfficialFile, MalformedLinesNameFileAndLine) {
  auto error_for = [&](const std::string& text) -> std::string {
    try {
      read_gsm_official_jsonl(write(text));
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  const std::string good = R"({"problem":"P","question":"Q","solution":"Answer: 3.","op":1})";
  EXPECT_NE(error_for(good + "\n" + R"({"problem":"P","question":"Q","op":1})")
                .find(".jsonl:2: missing field 'solution'"),
            std::string::npos);
  EXPECT_NE(error_for(good + "\n" + good + "\n{oops").find(".jsonl:3: not JSON"),
            std::string::npos);
  EXPECT_NE(error_for(R"({"problem":"P","question":"Q","solution":"Answer: 3.","op":"two"})")
                .find("field 'op' = \"two\" is not an integer"),
            std::string::npos);
}

// Empty inputs and directories are errors naming the path; a 100 MB invalid line gives a short
// message (and is not read whole into memory: lines stop at 16 MiB).
TEST_F(GsmOfficialFile, EmptyFilesDirectoriesAndHugeLinesGiveShortErrorsNamingThePath) {
  auto error_for = [&](const std::string& path) -> std::string {
    try {
      read_gsm_official_jsonl(path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  std::string message = error_for(write(""));
  EXPECT_NE(message.find(path_ + "' is empty"), std::string::npos) << message;
  message = error_for(write("\n  \n"));
  EXPECT_NE(message.find(path_ + ": no problems"), std::string::npos) << message;
  message = error_for(::testing::TempDir());
  EXPECT_NE(message.find("is a directory"), std::string::npos) << message;

  const std::string huge = "{\"problem\": \"" + std::string(100'000'000, 'x') + "\n";
  message = error_for(write(huge));
  EXPECT_NE(message.find(path_ + ":1: line longer than"), std::string::npos)
      << message.substr(0, 300);
  EXPECT_LT(message.size(), 600u) << message.substr(0, 300);
  const std::string long_invalid = "{\"problem\": \"" + std::string(1'000'000, 'x') + "\n";
  message = error_for(write(long_invalid));
  EXPECT_NE(message.find(path_ + ":1: not JSON"), std::string::npos) << message.substr(0, 300);
  EXPECT_LT(message.size(), 600u) << message.substr(0, 300);
}

}  // namespace hypnos::tasks
