// task.data_file (docs/tasks.md 3.5): problems from official GSM-Infinite JSONL or from
// `hypnos generate --text` lines, laid out word-level with the generated task's vocabulary; the
// text rendering of a problem (prompt, completion) that token files are made from.
#include "hypnos/tasks/gsm_file_task.h"

#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include "hypnos/tasks/gsm_infinite_generator.h"
#include "io/scratch_dir.h"

namespace hypnos::tasks {
namespace {

using io::testing::ScratchDir;
using io::testing::write_all;

GsmInfiniteOptions short_problems() {
  GsmInfiniteOptions o;
  o.length = GsmLength::kZero;
  o.op_max = 3;
  return o;
}

}  // namespace

TEST(GsmText, PromptIsQuestionProblemAnswerMarkerAndCompletionTheNumber) {
  GsmProblem p;
  p.question = "How many adult owls does Hamilton Farm have?";
  p.problem = "The number of adult owls in Hamilton Farm equals 4. ";
  p.answer = 4;
  p.op = 1;
  EXPECT_EQ(gsm_prompt_text(p),
            "How many adult owls does Hamilton Farm have?\nThe number of adult owls in Hamilton "
            "Farm equals 4.\nAnswer:");
  EXPECT_EQ(gsm_completion_text(p), " 4");
  const auto line = nlohmann::json::parse(gsm_text_jsonl(p, "test/3"));
  EXPECT_EQ(line["id"], "test/3");
  EXPECT_EQ(line["prompt"], gsm_prompt_text(p));
  EXPECT_EQ(line["completion"], " 4");
  EXPECT_EQ(line["answer"], 4);
}

TEST(GsmFileTask, TextLinesOfGeneratedProblemsReadBackToTheSameExamples) {
  ScratchDir dir;
  const GsmInfiniteTask generated(short_problems(), 5);
  std::string text;
  for (uint64_t i = 0; i < 4; ++i) {
    text += gsm_text_jsonl(generated.problem(Split::kTest, i).problem, std::to_string(i)) + "\n";
  }
  write_all(dir / "gen.jsonl", text);
  GsmInfiniteOptions options = short_problems();
  options.data_file = (dir / "gen.jsonl").string();
  const GsmFileTask file(options, 5);
  ASSERT_EQ(file.problems().size(), 4u);
  EXPECT_EQ(file.vocab_size(), generated.vocab_size());  // no new words: the same ids
  for (uint64_t i = 0; i < 4; ++i) {
    const Example a = generated.example(Split::kTest, i);
    const Example b = file.example(Split::kTest, i);
    EXPECT_EQ(a.tokens, b.tokens) << i;
    EXPECT_EQ(a.loss_mask, b.loss_mask) << i;
    EXPECT_EQ(a.groups[0].bucket, b.groups[0].bucket) << i;
  }
  // Training reads every problem once per epoch (epoch 1 is indices 4..7), each epoch in its own
  // seeded order (task.shuffle), or in the file's order without shuffle.
  std::set<std::vector<int64_t>> epoch1, file_problems;
  for (uint64_t i = 0; i < 4; ++i) {
    epoch1.insert(file.example(Split::kTrain, 4 + i).tokens);
    file_problems.insert(generated.example(Split::kTest, i).tokens);
  }
  EXPECT_EQ(epoch1, file_problems);
  options.shuffle = false;
  const GsmFileTask in_order(options, 5);
  EXPECT_EQ(in_order.example(Split::kTrain, 5).tokens, generated.example(Split::kTest, 1).tokens);
  try {
    file.example(Split::kTest, 4);
    FAIL() << "test example 4 of a 4-problem file";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("gen.jsonl: the file holds 4 problems"), std::string::npos)
        << e.what();
  }
}

TEST(GsmFileTask, OfficialLinesExtendTheVocabularyAndReachTheTaskFromItsOptions) {
  ScratchDir dir;
  write_all(dir / "official.jsonl",
            R"({"problem": "The number of adult zebrafish in Quokka Cove equals 3. ", )"
            R"("question": "How many adult zebrafish does Quokka Cove have?", )"
            R"("solution": "Answer: 3.", "op": "1", "mode": "normalforward", )"
            R"("template": "crazy_zootopia", "d": 2})"
            "\n"
            R"({"problem": "p", "question": "q", "solution": "Answer: 1234.", "op": 1})"
            "\n");
  TaskOptions options;
  options.name = TaskName::kGsmInfinite;
  options.gsm = short_problems();
  options.gsm.data_file = (dir / "official.jsonl").string();
  const auto task = make_task(options, 0);
  const auto& file = dynamic_cast<const GsmFileTask&>(*task);
  EXPECT_EQ(file.problems().size(), 1u);
  EXPECT_EQ(file.dropped(), 1);
  const Example ex = task->example(Split::kTest, 0);
  ASSERT_EQ(ex.groups.size(), 1u);
  EXPECT_EQ(ex.groups[0].bucket, "op=1");
  EXPECT_EQ(ex.groups[0].tags, (std::vector<std::string>{"mode=forward", "template=zoo"}));
  const int64_t colon = ex.groups[0].positions[0];
  EXPECT_EQ(ex.targets[colon], GsmTokenizer::kNumberBase + 3);
  for (int64_t id : ex.tokens) EXPECT_NE(id, GsmTokenizer::kUnk);  // vocab_extend
  options.gsm.vocab_extend = false;
  const auto plain = make_task(options, 0);
  const Example unk = plain->example(Split::kTest, 0);
  EXPECT_NE(std::find(unk.tokens.begin(), unk.tokens.end(), GsmTokenizer::kUnk), unk.tokens.end());
}

}  // namespace hypnos::tasks
