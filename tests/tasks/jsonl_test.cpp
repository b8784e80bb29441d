// JSONL round trip of generated examples, and docs/reliability.md R14: malformed lines are refused
// with an error naming file:line and what was wrong; empty files and directories name the path.
#include "hypnos/tasks/jsonl.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hypnos/tasks/task_options.h"

namespace hypnos::tasks {
namespace {

/// A file in GoogleTest's temporary directory, removed with the fixture.
/// (std::filesystem::remove_all is avoided: the torch wheel's libtorch.so exports a copy of it that
/// crashed here.)
class JsonlFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = ::testing::TempDir() + "hypnos_jsonl_" + info->name() + "_" +
            std::to_string(::getpid()) + ".jsonl";
  }
  void TearDown() override { std::remove(path_.c_str()); }

  std::string write(const std::string& text) {
    std::ofstream(path_) << text;
    return path_;
  }
  /// The message read_examples_jsonl throws for `text` (vocab 6, T = 4), or "" if none.
  std::string error_for(const std::string& text) {
    try {
      read_examples_jsonl(write(text), 6, 4);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }

  std::string path_;
};

const std::string kGood =
    R"({"tokens":[0,1,2,3],"targets":[1,2,3,0],"loss_mask":[0,1,1,0],"note":"x"})";

void expect_contains(const std::string& message, const std::string& part) {
  EXPECT_NE(message.find(part), std::string::npos) << "'" << message << "' lacks '" << part << "'";
}

}  // namespace

TEST_F(JsonlFile, GeneratedExamplesRoundTrip) {
  for (TaskName name : {TaskName::kRule110, TaskName::kDepo}) {
    TaskOptions options;
    options.name = name;
    auto task = make_task(options, 12);
    std::ostringstream text;
    write_jsonl(*task, Split::kTest, 3, 5, text);
    const auto examples =
        read_examples_jsonl(write(text.str()), task->vocab_size(), task->seq_len());
    ASSERT_EQ(examples.size(), 5u);
    for (int i = 0; i < 5; ++i) {
      const Example want = task->example(Split::kTest, 3 + i);
      EXPECT_EQ(examples[i].tokens, want.tokens);
      EXPECT_EQ(examples[i].targets, want.targets);
      EXPECT_EQ(examples[i].loss_mask, want.loss_mask);
      ASSERT_EQ(examples[i].groups.size(), want.groups.size());
      for (size_t g = 0; g < want.groups.size(); ++g) {
        EXPECT_EQ(examples[i].groups[g].bucket, want.groups[g].bucket);
        EXPECT_EQ(examples[i].groups[g].positions, want.groups[g].positions);
      }
      EXPECT_EQ(nlohmann::json::parse(examples[i].fields_json),
                nlohmann::json::parse(want.fields_json));
    }
  }
}

TEST_F(JsonlFile, GenerateLinesCarryTheDesignFields) {
  TaskOptions options;
  options.name = TaskName::kDepo;
  auto task = make_task(options, 1);
  std::ostringstream text;
  write_jsonl(*task, Split::kTrain, 0, 2, text);
  std::istringstream lines(text.str());
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    const auto obj = nlohmann::ordered_json::parse(line);  // keeps the written key order
    for (const char* key : {"tokens", "targets", "loss_mask", "edges", "queries", "n", "names"}) {
      EXPECT_TRUE(obj.contains(key)) << key;
    }
    EXPECT_EQ(obj.begin().key(), "tokens");  // the order docs/design.md 3 lists
    ++count;
  }
  EXPECT_EQ(count, 2);
}

TEST_F(JsonlFile, MissingGroupsDefaultToRunsOfScoredPositions) {
  const auto examples = read_examples_jsonl(
      write(kGood + "\n\n" + R"({"tokens":[0,1,2,3],"targets":[1,2,3,0],"loss_mask":[1,0,1,1]})" +
            "\n"),
      6, 4);
  ASSERT_EQ(examples.size(), 2u);
  ASSERT_EQ(examples[0].groups.size(), 1u);
  EXPECT_EQ(examples[0].groups[0].positions, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(examples[0].groups[0].bucket, "all");
  ASSERT_EQ(examples[1].groups.size(), 2u);
  EXPECT_EQ(examples[1].groups[1].positions, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(nlohmann::json::parse(examples[0].fields_json)["note"], "x");
}

TEST_F(JsonlFile, LineThatIsNotJsonNamesFileAndLine) {
  const std::string message = error_for(kGood + "\n{\"tokens\": [0, 1,\n");
  expect_contains(message, ".jsonl:2");
  expect_contains(message, "not JSON");
  expect_contains(error_for("[1, 2, 3]\n"), ".jsonl:1: not a JSON object");
}

TEST_F(JsonlFile, MissingFieldIsNamed) {
  const std::string message =
      error_for(kGood + "\n" + kGood + "\n" + R"({"tokens":[0,1,2,3],"loss_mask":[0,1,1,0]})");
  expect_contains(message, ".jsonl:3");
  expect_contains(message, "missing field 'targets'");
}

TEST_F(JsonlFile, TokenOutOfVocabularyIsNamed) {
  const std::string message =
      error_for(R"({"tokens":[0,1,6,3],"targets":[1,2,3,0],"loss_mask":[0,1,1,0]})");
  expect_contains(message, ".jsonl:1");
  expect_contains(message, "tokens[2] = 6 is outside the vocabulary [0, 6)");
  expect_contains(error_for(R"({"tokens":[0,1,2,3],"targets":[1,-1,3,0],"loss_mask":[0,1,1,0]})"),
                  "targets[1] = -1");
}

TEST_F(JsonlFile, WrongLengthAndBadValuesAreNamed) {
  expect_contains(error_for(R"({"tokens":[0,1,2],"targets":[1,2,3,0],"loss_mask":[0,1,1,0]})"),
                  "field 'tokens' has 3 entries, expected seq_len = 4");
  expect_contains(error_for(R"({"tokens":[0,1,2,3],"targets":[1,2,3,0],"loss_mask":[0,2,1,0]})"),
                  "loss_mask[1] = 2, expected 0 or 1");
  expect_contains(error_for(R"({"tokens":[0,1.5,2,3],"targets":[1,2,3,0],"loss_mask":[0,1,1,0]})"),
                  "tokens[1] = 1.5 is not an integer");
  expect_contains(error_for(R"({"tokens":"0123","targets":[1,2,3,0],"loss_mask":[0,1,1,0]})"),
                  "field 'tokens' is not an array");
  expect_contains(
      error_for(
          R"({"tokens":[0,1,2,3],"targets":[1,2,3,0],"loss_mask":[0,1,1,0],"groups":[{"bucket":"k=1","positions":[0]}]})"),
      "position 0 is not a scored position");
}

TEST_F(JsonlFile, EmptyOrMissingFileIsAnError) {
  expect_contains(error_for("\n\n"), "no examples");
  expect_contains(error_for(""), path_ + "' is empty");
  EXPECT_THROW(read_examples_jsonl(path_ + ".absent", 6, 4), std::runtime_error);
  try {
    read_examples_jsonl(::testing::TempDir(), 6, 4);
    ADD_FAILURE() << "a directory was read as task data";
  } catch (const std::runtime_error& e) {
    expect_contains(e.what(), "is a directory");
  }
}

TEST_F(JsonlFile, ALongInvalidLineIsQuotedShort) {
  const std::string message = error_for("{\"tokens\": \"" + std::string(1'000'000, 'x') + "\n");
  expect_contains(message, ":1: not JSON");
  EXPECT_LT(message.size(), 600u) << message.substr(0, 300);
}

}  // namespace hypnos::tasks
