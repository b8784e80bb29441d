// The GSM-Infinite tokenizer of docs/tasks.md 3.4: fixed ids below the words, splitting and case
// rules, the bytewise-sorted word list, vocab.txt round trip and refusals naming path:line.
#include "hypnos/tasks/gsm_infinite_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "hypnos/tasks/gsm_infinite_templates.h"

namespace hypnos::tasks {
namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "hypnos_gsm_vocab_" + name + "_" + std::to_string(::getpid()) +
         ".txt";
}

}  // namespace

TEST(GsmTokenizer, FixedIdsForSpecialsNumbersAndMarks) {
  const GsmTokenizer tok = GsmTokenizer::from_texts({});
  EXPECT_EQ(tok.vocab_size(), 1013);
  EXPECT_EQ(tok.token(0), "<pad>");
  EXPECT_EQ(tok.token(3), "<unk>");
  EXPECT_EQ(tok.encode("0 12 1000"), (std::vector<int64_t>{4, 16, 1004}));
  EXPECT_EQ(tok.encode(". , ? : ; ( ) !"),
            (std::vector<int64_t>{1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012}));
  int64_t unknown = 0;
  // Above 1000, a leading zero, and an unknown word are UNK, and counted.
  EXPECT_EQ(tok.encode("1001 007 99999 zebra", &unknown), (std::vector<int64_t>{3, 3, 3, 3}));
  EXPECT_EQ(unknown, 4);
}

TEST(GsmTokenizer, PiecesSplitMarksLowerCaseAsciiOnlyAndKeepApostrophesAndHyphens) {
  EXPECT_EQ(GsmTokenizer::pieces("The number of adult bear,in (Bundle)\tRanch?\n"),
            (std::vector<std::string>{"the", "number", "of", "adult", "bear", ",", "in", "(",
                                      "bundle", ")", "ranch", "?"}));
  EXPECT_EQ(GsmTokenizer::pieces("Festival de Saint-Rivage CINÉMA 80's Answer: 7."),
            (std::vector<std::string>{"festival", "de", "saint-rivage", "cinÉma", "80's", "answer",
                                      ":", "7", "."}));
}

TEST(GsmTokenizer, WordsAreSortedBytewiseAfterTheMarks) {
  const GsmTokenizer tok = GsmTokenizer::from_texts({"zoo Rêves", "apple, zoo", "Zeta 42"});
  // Words are lower-cased before sorting, so "Zeta" sorts as "zeta".
  EXPECT_EQ(tok.vocab_size(), 1013 + 4);
  EXPECT_EQ(tok.token(1013), "apple");
  EXPECT_EQ(tok.token(1014), "rêves");
  EXPECT_EQ(tok.token(1015), "zeta");
  EXPECT_EQ(tok.token(1016), "zoo");
  const GsmTokenizer accents = GsmTokenizer::from_texts({"cinz cinéma"});
  EXPECT_EQ(accents.token(1013), "cinz");  // 'z' = 0x7a < 0xc3, the first byte of 'é'
  EXPECT_EQ(tok.decode(tok.encode("Zoo, apple 5")), "zoo , apple 5");
}

TEST(GsmTokenizer, CoreVocabularyCoversTheSamplesWithoutUnknowns) {
  const GsmTokenizer tok = GsmTokenizer::from_texts(gsm_core_texts());
  int64_t unknown = 0;
  tok.encode(
      "The number of public highschool in Evervale City equals 4 plus the number of "
      "private middle school in Evervale City. The number of private middle school in "
      "Evervale City exists, and its number is greater than 0. How many private middle "
      "school does Evervale City have? The average number of newborn children per adult "
      "parrot in Cedar Valley equals the sum of 3 and 4. Festival Lumière de Valmont. "
      "answer: 4",
      &unknown);
  EXPECT_EQ(unknown, 0);
  tok.encode("The number of adult angelfish in Louvre Museum", &unknown);
  EXPECT_EQ(unknown, 3);  // distractor names are not core words
}

TEST(GsmTokenizer, ExtendAppendsUnseenWordsSortedAndKeepsOldIds) {
  GsmTokenizer tok = GsmTokenizer::from_texts({"bear wolf"});
  const auto before = tok.encode("bear wolf");
  EXPECT_EQ(tok.extend({"Wolf koi angelfish 17"}), 2);
  EXPECT_EQ(tok.encode("bear wolf"), before);
  EXPECT_EQ(tok.encode("angelfish koi"), (std::vector<int64_t>{1015, 1016}));
}

TEST(GsmTokenizer, SavedVocabularyLoadsIdentically) {
  const GsmTokenizer tok = GsmTokenizer::from_texts(gsm_core_texts());
  const std::string path = temp_path("roundtrip");
  tok.save(path);
  const GsmTokenizer loaded = GsmTokenizer::load(path);
  std::remove(path.c_str());
  ASSERT_EQ(loaded.vocab_size(), tok.vocab_size());
  for (int64_t id = 0; id < tok.vocab_size(); ++id) ASSERT_EQ(loaded.token(id), tok.token(id));
  const std::string text = "What is the total number of movie nominations in Rêves de Belleville?";
  EXPECT_EQ(loaded.encode(text), tok.encode(text));
}

TEST(GsmTokenizer, LoadRefusesBadFilesNamingPathAndLine) {
  const std::string path = temp_path("bad");
  auto load_error = [&](const std::string& text) -> std::string {
    std::ofstream(path) << text;
    try {
      GsmTokenizer::load(path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  std::string fixed;
  const GsmTokenizer base = GsmTokenizer::from_texts({});
  for (int64_t id = 0; id < base.vocab_size(); ++id) fixed += base.token(id) + "\n";
  std::string wrong = fixed;
  wrong.replace(wrong.find("\n17\n") + 1, 2, "18");
  EXPECT_NE(load_error(wrong).find(":22: expected the fixed token '17'"), std::string::npos)
      << load_error(wrong);
  EXPECT_NE(load_error(fixed + "bear\nbear\n").find(":1015: duplicate word 'bear'"),
            std::string::npos);
  EXPECT_NE(load_error(fixed + "Bear\n").find(":1014:"), std::string::npos);
  EXPECT_NE(load_error("<pad>\n").find("expected at least 1013"), std::string::npos);
  std::remove(path.c_str());
}

}  // namespace hypnos::tasks
