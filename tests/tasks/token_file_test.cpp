// Token files (docs/tasks.md 3.5), built here byte by byte: the reader maps the ids and checks
// the index against them (truncated file, a record past the end, an answer span outside its
// record, an id outside the vocabulary, the tokenizer's hash), every error naming file and
// record; the task scores exactly the answer span and batches pad to their longest example.
#include "hypnos/tasks/token_file.h"

#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "hypnos/io/sha256.h"
#include "hypnos/tasks/batch.h"
#include "hypnos/tasks/task_options.h"
#include "hypnos/tasks/token_file_task.h"
#include "io/scratch_dir.h"
#include "testing/errors.h"

namespace hypnos::tasks {
namespace {

using io::testing::ScratchDir;
using io::testing::write_all;

// A vocabulary of 10 ids: 8 model tokens and two special added tokens.
const char* kTokenizerJson = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2,
  "Ġ1": 3, "Ġ2": 4, "Ġ17": 5, "Answer": 6, ":": 7}, "merges": []},
  "added_tokens": [{"id": 8, "content": "<|pad|>", "special": true},
                   {"id": 9, "content": "<|endoftext|>", "special": true}],
  "decoder": {"type": "ByteLevel"}})";

struct Rec {
  std::vector<uint32_t> ids;
  int64_t answer_start, answer_length;
};

/// Writes NAME.tokens and NAME.index.jsonl for `recs`; `edit` may change the index lines.
std::string write_token_file(const ScratchDir& dir, const std::string& name,
                             const std::vector<Rec>& recs, const std::string& tokenizer_dir,
                             const std::function<void(std::vector<nlohmann::json>&)>& edit = {}) {
  std::string bytes;
  std::vector<nlohmann::json> lines;
  int64_t offset = 0;
  for (size_t r = 0; r < recs.size(); ++r) {
    for (uint32_t id : recs[r].ids) {
      for (int k = 0; k < 4; ++k) bytes += static_cast<char>((id >> (8 * k)) & 0xFF);
    }
    lines.push_back({{"id", "src.jsonl:" + std::to_string(r + 1)},
                     {"offset", offset},
                     {"length", recs[r].ids.size()},
                     {"answer_start", recs[r].answer_start},
                     {"answer_length", recs[r].answer_length},
                     {"answer", 17},
                     {"op", static_cast<int64_t>(r + 1)},
                     {"mode", "forward"},
                     {"template", "zoo"},
                     {"d", 3}});
    offset += static_cast<int64_t>(recs[r].ids.size());
  }
  const nlohmann::json header = {{"format", "hypnos-token-file"},
                                 {"version", 1},
                                 {"n_records", recs.size()},
                                 {"n_tokens", offset},
                                 {"tokenizer_sha256", tokenizer_sha256(tokenizer_dir)},
                                 {"pad_id", 8}};
  lines.insert(lines.begin(), header);
  if (edit) edit(lines);
  std::string index;
  for (const auto& l : lines) index += l.dump() + "\n";
  write_all(dir / (name + ".tokens"), bytes);
  write_all(dir / (name + ".index.jsonl"), index);
  return (dir / (name + ".tokens")).string();
}

std::string tokenizer_dir(const ScratchDir& dir) {
  std::filesystem::create_directories(dir / "tok");
  write_all(dir / "tok" / "tokenizer.json", kTokenizerJson);
  return (dir / "tok").string();
}

const std::vector<Rec> kRecs{{{0, 1, 2, 6, 7, 5}, 5, 1}, {{9, 2, 6, 7, 3, 4}, 4, 2}};

/// The message of the exception `f` throws ("" when none).
template <class F>
std::string error_of(F&& f) {
  return testing::error_message(std::forward<F>(f));
}

}  // namespace

TEST(TokenFile, ReadsTheRecordsAndTheirIds) {
  ScratchDir dir;
  const std::string tok = tokenizer_dir(dir);
  const TokenFile file(write_token_file(dir, "gsm", kRecs, tok), 10);
  ASSERT_EQ(file.records().size(), 2u);
  EXPECT_EQ(file.n_tokens(), 12);
  EXPECT_EQ(file.max_length(), 6);
  EXPECT_EQ(file.pad_id(), 8);
  EXPECT_EQ(file.tokens(0), (std::vector<int64_t>{0, 1, 2, 6, 7, 5}));
  EXPECT_EQ(file.tokens(1), (std::vector<int64_t>{9, 2, 6, 7, 3, 4}));
  EXPECT_EQ(file.records()[1].id, "src.jsonl:2");
  EXPECT_EQ(file.records()[1].offset, 6);
  EXPECT_EQ(file.records()[1].answer_start, 4);
  EXPECT_EQ(file.records()[1].index_line, 3);
  EXPECT_EQ(file.tokenizer_sha256(), io::sha256_hex(std::filesystem::path(tok) / "tokenizer.json"));
  EXPECT_NO_THROW(file.check_tokenizer(tok));
}

TEST(TokenFile, LargeIdsAreLittleEndianUint32) {
  ScratchDir dir;
  const std::string tok = tokenizer_dir(dir);
  const TokenFile file(write_token_file(dir, "big", {{{70000, 151935, 1, 2}, 2, 2}}, tok), 0);
  EXPECT_EQ(file.tokens(0), (std::vector<int64_t>{70000, 151935, 1, 2}));
}

TEST(TokenFile, ErrorsNameTheFileAndTheRecord) {
  ScratchDir dir;
  const std::string tok = tokenizer_dir(dir);
  // Truncated token file.
  const std::string path = write_token_file(dir, "trunc", kRecs, tok);
  std::filesystem::resize_file(path, 44);
  std::string e = error_of([&] { TokenFile(path, 10); });
  EXPECT_NE(e.find("trunc.tokens: 44 bytes, expected n_tokens x 4 = 48"), std::string::npos) << e;
  // A record pointing past the end.
  const std::string past =
      write_token_file(dir, "past", kRecs, tok, [](auto& lines) { lines[2]["offset"] = 7; });
  e = error_of([&] { TokenFile(past, 10); });
  EXPECT_NE(e.find("past.index.jsonl:3 (record 'src.jsonl:2'): tokens [7, 13) point past the end"),
            std::string::npos)
      << e;
  // An answer span outside its record.
  const std::string span =
      write_token_file(dir, "span", kRecs, tok, [](auto& lines) { lines[1]["answer_start"] = 0; });
  e = error_of([&] { TokenFile(span, 10); });
  EXPECT_NE(e.find("span.index.jsonl:2 (record 'src.jsonl:1'): answer span [0, 1)"),
            std::string::npos)
      << e;
  // An id outside the vocabulary.
  const std::string vocab = write_token_file(dir, "vocab", kRecs, tok);
  e = error_of([&] { TokenFile(vocab, 9); });
  EXPECT_NE(e.find("vocab.tokens: token 0 of record 'src.jsonl:2' (" + (dir / "vocab").string() +
                   ".index.jsonl:3) = 9 is outside the vocabulary [0, 9)"),
            std::string::npos)
      << e;
  // Fewer records than the header says.
  const std::string count =
      write_token_file(dir, "count", kRecs, tok, [](auto& lines) { lines[0]["n_records"] = 3; });
  e = error_of([&] { TokenFile(count, 10); });
  EXPECT_NE(e.find("count.index.jsonl: 2 records, the header says n_records = 3"),
            std::string::npos)
      << e;
  // Not a header; a name without .tokens; a missing index.
  const std::string header = write_token_file(dir, "header", kRecs, tok,
                                              [](auto& lines) { lines[0]["format"] = "other"; });
  e = error_of([&] { TokenFile(header, 10); });
  EXPECT_NE(e.find("header.index.jsonl:1: not a token-file header"), std::string::npos) << e;
  EXPECT_THROW(TokenFile((dir / "x.bin").string(), 10), std::invalid_argument);
  write_all(dir / "lonely.tokens", std::string(8, '\0'));
  e = error_of([&] { TokenFile((dir / "lonely.tokens").string(), 10); });
  EXPECT_NE(e.find("lonely.index.jsonl"), std::string::npos) << e;
}

TEST(TokenFile, AnotherTokenizerIsRefusedNamingBothFiles) {
  ScratchDir dir;
  const std::string tok = tokenizer_dir(dir);
  const TokenFile file(write_token_file(dir, "gsm", kRecs, tok), 10);
  std::filesystem::create_directories(dir / "other");
  write_all(dir / "other" / "tokenizer.json", std::string(kTokenizerJson) + " ");
  const std::string e = error_of([&] { file.check_tokenizer((dir / "other").string()); });
  EXPECT_NE(e.find("gsm.index.jsonl: tokenizer_sha256 " + file.tokenizer_sha256() +
                   " differs from " + (dir / "other" / "tokenizer.json").string()),
            std::string::npos)
      << e;
}

TEST(TokenFileTask, ScoresTheAnswerSpanAndPadsBatchesToTheLongest) {
  ScratchDir dir;
  const std::string tok = tokenizer_dir(dir);
  TaskOptions options;
  options.name = TaskName::kGsmInfinite;
  options.gsm.token_file =
      write_token_file(dir, "gsm", {{{0, 1, 2, 6, 7, 5}, 5, 1}, {{9, 6, 7, 3, 4}, 3, 2}}, tok);
  EXPECT_THROW(make_task(options, 0), std::invalid_argument);  // no tokenizer folder
  options.gsm.tokenizer = tok;
  const auto task = make_task(options, 0);
  EXPECT_EQ(task->vocab_size(), 10);
  EXPECT_EQ(task->seq_len(), 6);
  EXPECT_EQ(task->pad_id(), 8);
  const Example a = task->example(Split::kTest, 0);
  EXPECT_EQ(a.tokens, (std::vector<int64_t>{0, 1, 2, 6, 7, 5}));
  EXPECT_EQ(a.targets, (std::vector<int64_t>{1, 2, 6, 7, 5, 8}));
  EXPECT_EQ(a.loss_mask, (std::vector<uint8_t>{0, 0, 0, 0, 1, 0}));
  ASSERT_EQ(a.groups.size(), 1u);
  EXPECT_EQ(a.groups[0].bucket, "op=1");
  EXPECT_EQ(a.groups[0].positions, (std::vector<int64_t>{4}));
  EXPECT_EQ(a.groups[0].tags, (std::vector<std::string>{"mode=forward", "template=zoo"}));
  const Example b = task->example(Split::kTest, 1);
  EXPECT_EQ(b.loss_mask, (std::vector<uint8_t>{0, 0, 1, 1, 0}));  // targets 3, 4: " 1", " 2"
  EXPECT_EQ(b.groups[0].positions, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(nlohmann::json::parse(b.fields_json)["id"], "src.jsonl:2");
  // Training reads each record once per epoch (seeded order, task.shuffle; the file's order
  // without); a test index past the file's end is an error naming it.
  for (const uint64_t epoch : {0, 1, 2}) {
    const auto first = task->example(Split::kTrain, 2 * epoch).tokens;
    const auto second = task->example(Split::kTrain, 2 * epoch + 1).tokens;
    EXPECT_TRUE((first == a.tokens && second == b.tokens) ||
                (first == b.tokens && second == a.tokens))
        << "epoch " << epoch;
  }
  TaskOptions in_order = options;
  in_order.gsm.shuffle = false;
  EXPECT_EQ(make_task(in_order, 0)->example(Split::kTrain, 3).tokens, b.tokens);
  EXPECT_THROW(task->example(Split::kTest, 2), std::out_of_range);

  const Batch batch = make_batch(*task, Split::kTest, 0, 2);
  EXPECT_EQ(batch.tokens.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(batch.tokens[1][5].item<int64_t>(), 8);  // the pad id
  EXPECT_EQ(batch.targets[1][5].item<int64_t>(), 8);
  EXPECT_FALSE(batch.loss_mask[1][5].item<bool>());
  EXPECT_EQ(batch.loss_mask.sum().item<int64_t>(), 3);
  // Metrics see each example at its own length.
  MetricAccumulator metrics;
  add_batch(metrics, batch, batch.targets, at::zeros({2, 6}));
  EXPECT_EQ(metrics.overall().groups, 2);
  EXPECT_DOUBLE_EQ(metrics.overall().exact_accuracy(), 1.0);
}

// task.eval_token_file: the test split reads the held-out file, training the training file; the
// longest record of either sets seq_len; missing files and an eval file alone are refused naming
// their key.
TEST(TokenFileTask, HeldOutProblemsComeFromTheEvalTokenFile) {
  ScratchDir dir;
  const std::string tok = tokenizer_dir(dir);
  TaskOptions options;
  options.name = TaskName::kGsmInfinite;
  options.gsm.tokenizer = tok;
  options.gsm.token_file = write_token_file(dir, "train", kRecs, tok);
  options.gsm.eval_token_file =
      write_token_file(dir, "test", {{{2, 2, 1, 0, 6, 7, 3, 4}, 6, 2}}, tok);
  options.gsm.shuffle = false;  // training index 1 is the training file's record 1
  const auto task = make_task(options, 0);
  EXPECT_EQ(task->seq_len(), 8);
  EXPECT_EQ(task->example(Split::kTest, 0).tokens, (std::vector<int64_t>{2, 2, 1, 0, 6, 7, 3, 4}));
  EXPECT_EQ(task->example(Split::kTest, 0).loss_mask,
            (std::vector<uint8_t>{0, 0, 0, 0, 0, 1, 1, 0}));
  EXPECT_EQ(task->example(Split::kTrain, 1).tokens, (std::vector<int64_t>{9, 2, 6, 7, 3, 4}));
  const std::string past = error_of([&] { task->example(Split::kTest, 1); });
  EXPECT_NE(past.find("test example 1 of " + options.gsm.eval_token_file + ": the file holds 1"),
            std::string::npos)
      << past;

  TaskOptions missing = options;
  missing.gsm.eval_token_file = (dir / "nowhere.tokens").string();
  const std::string e = error_of([&] { make_task(missing, 0); });
  EXPECT_NE(e.find("task.eval_token_file = " + missing.gsm.eval_token_file + ": no such file"),
            std::string::npos)
      << e;
  missing.gsm.token_file = "/path/to/train.tokens";
  EXPECT_NE(error_of([&] {
              make_task(missing, 0);
            }).find("task.token_file = /path/to/train.tokens: no such file"),
            std::string::npos);
  TaskOptions alone = options;
  alone.gsm.token_file.clear();
  EXPECT_NE(error_of([&] { make_task(alone, 0); }).find("needs task.token_file"),
            std::string::npos);
}

TEST(TokenFileTask, DataFileAndTokenFileTogetherAreRefused) {
  TaskOptions options;
  options.name = TaskName::kGsmInfinite;
  options.gsm.token_file = "a.tokens";
  options.gsm.data_file = "a.jsonl";
  EXPECT_THROW(make_task(options, 0), std::invalid_argument);
}

}  // namespace hypnos::tasks
