// The tokenizer's vocabulary in C++ (docs/tasks.md 3.5): GPT-2's byte map, lossy UTF-8 as Rust and
// Python do it, and decode(ids) equal to the `tokenizers` library's decode on the same ids for a
// byte-level BPE tokenizer trained here offline (tests/python/tiny_tokenizer.py).
#include "hypnos/tasks/tokenizer_vocab.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "io/scratch_dir.h"
#include "testing/paths.h"

namespace hypnos::tasks {
namespace {

using io::testing::run_command;
using io::testing::ScratchDir;

}  // namespace

TEST(TokenizerVocab, ByteMapIsGpt2s) {
  const std::vector<uint32_t> map = byte_level_code_points();
  ASSERT_EQ(map.size(), 256u);
  EXPECT_EQ(std::set<uint32_t>(map.begin(), map.end()).size(), 256u);
  EXPECT_EQ(map['!'], uint32_t{'!'});
  EXPECT_EQ(map['~'], uint32_t{'~'});
  EXPECT_EQ(map[0], 256u);
  EXPECT_EQ(map[' '], 0x120u);   // "Ġ"
  EXPECT_EQ(map['\n'], 0x10Au);  // "Ċ"
  EXPECT_EQ(map[0xAD], 0x143u);  // the soft hyphen is the last remapped byte
  EXPECT_EQ(map[0xA1], 0xA1u);
}

TEST(TokenizerVocab, Utf8LossyReplacesEachMaximalInvalidSubsequence) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("a\xC3\xA9z"), "a\xC3\xA9z");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\xA6\x89"), "\xF0\x9F\xA6\x89");
  EXPECT_EQ(utf8_lossy("\xE2\x82"), r);  // truncated: one replacement
  EXPECT_EQ(utf8_lossy("\xE2\x82x"), r + "x");
  EXPECT_EQ(utf8_lossy("\xF0\x80"), r + r);          // 0x80 cannot follow 0xF0
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), r + r + r);  // a surrogate
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), r + r);
  EXPECT_EQ(utf8_lossy("\xFF"), r);
}

TEST(TokenizerVocab, ReadsTokenizerJsonAndNamesAMissingTokenizer) {
  ScratchDir dir;
  io::testing::write_all(
      dir / "tokenizer.json",
      R"({"model": {"vocab": {"a": 0, "Ġb": 2}}, "added_tokens": [)"
      R"({"id": 3, "content": "<s>", "special": true}],)"
      R"( "decoder": {"type": "Sequence", "decoders": [{"type": "ByteLevel"}]}})");
  const TokenizerVocab v = TokenizerVocab::load(dir.path().string());
  EXPECT_EQ(v.size(), 4);
  EXPECT_TRUE(v.byte_level());
  EXPECT_EQ(v.token(1), "");
  EXPECT_EQ(v.decode({3, 0, 2}), "a b");
  EXPECT_EQ(v.decode({3, 0, 2}, false), "<s>a b");
  EXPECT_THROW(v.decode({4}), std::out_of_range);
  ScratchDir empty;
  try {
    TokenizerVocab::load(empty.path().string());
    FAIL() << "loaded a folder without a tokenizer";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("expected tokenizer.json, or vocab.json and merges.txt"),
              std::string::npos);
  }
}

TEST(TokenizerVocab, DecodeEqualsTheTokenizersLibrary) {
  if (std::string(testing::python()).empty()) GTEST_SKIP() << "no Python (HYPNOS_PYTHON)";
  ScratchDir dir;
  const std::string py = testing::python();
  const std::string helpers = std::string(testing::source_dir()) + "/tests/python";
  int status = 0;
  // Ids: every id alone, and runs of random ids (byte fragments, special tokens in between).
  const std::string script = R"(
import json, random, sys
sys.path.insert(0, sys.argv[1])
import tiny_tokenizer
out = sys.argv[2]
for pair in (False, True):
    d = out + ("/pair" if pair else "/json")
    tok = tiny_tokenizer.build(d, vocab_size=400, pair=pair)
    n = tok.get_vocab_size(with_added_tokens=True)
    rng = random.Random(7)
    cases = [[i] for i in range(n)] + [[rng.randrange(n) for _ in range(rng.randrange(1, 12))] for _ in range(300)]
    cases.append(tok.encode("Ünïcödé, emoji 🦉 and tabs\tare bytes too.\nAnswer: 17").ids)
    if pair:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        tok = Tokenizer(models.BPE.from_file(d + "/vocab.json", d + "/merges.txt"))
        tok.decoder = decoders.ByteLevel()
    rows = [{"ids": c, "text": tok.decode(c), "all": tok.decode(c, skip_special_tokens=False)} for c in cases]
    with open(d + "/cases.json", "w", encoding="utf-8") as f:
        json.dump(rows, f)
)";
  io::testing::write_all(dir / "make.py", script);
  run_command(
      py + " " + (dir / "make.py").string() + " " + helpers + " " + dir.path().string() + " 2>&1",
      &status);
  ASSERT_EQ(status, 0) << "tiny_tokenizer.py failed";
  for (const std::string sub : {"json", "pair"}) {
    const TokenizerVocab v = TokenizerVocab::load((dir / sub).string());
    EXPECT_TRUE(v.byte_level());
    std::ifstream in(dir / sub / "cases.json");
    const nlohmann::json cases = nlohmann::json::parse(in);
    ASSERT_GT(cases.size(), 300u);
    int64_t checked = 0;
    for (const auto& c : cases) {
      const std::vector<int64_t> ids = c["ids"].get<std::vector<int64_t>>();
      ASSERT_EQ(v.decode(ids), c["text"].get<std::string>()) << sub << " ids " << c["ids"].dump();
      if (sub == "json") {  // vocab.json has no added tokens to skip
        ASSERT_EQ(v.decode(ids, false), c["all"].get<std::string>()) << c["ids"].dump();
      }
      ++checked;
    }
    EXPECT_EQ(checked, static_cast<int64_t>(cases.size()));
  }
}

}  // namespace hypnos::tasks
