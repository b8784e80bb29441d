// The word-level GSM-Infinite tokenizer of docs/tasks.md 3.4: whitespace chunks split into
// punctuation marks and words, A-Z lower-cased, integers 0..1000 as number tokens, a sorted word
// list after them.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hypnos::tasks {

class GsmTokenizer {
 public:
  static constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3;
  static constexpr int64_t kNumberBase = 4;  ///< number v is kNumberBase + v
  static constexpr int64_t kMaxNumber = 1000;
  static constexpr int64_t kPunctBase = 1005;  ///< the marks of kPunctuation, in order
  static constexpr std::string_view kPunctuation = ".,?:;()!";
  static constexpr int64_t kFirstWord = 1013;

  /// A vocabulary of the words of `texts` (split as encode does), sorted bytewise.
  static GsmTokenizer from_texts(const std::vector<std::string>& texts);
  /// Reads vocab.txt (one token per line, as save writes it). Errors name path:line.
  static GsmTokenizer load(const std::string& path);
  void save(const std::string& path) const;

  /// The pieces of `text` as the vocabulary sees them: words lower-cased, marks alone.
  static std::vector<std::string> pieces(std::string_view text);

  /// Token ids (no BOS). Unknown words and out-of-range or zero-led numbers become kUnk; their
  /// count is added to *unknown when given.
  std::vector<int64_t> encode(std::string_view text, int64_t* unknown = nullptr) const;
  /// Tokens joined by single spaces (lossy: case and spacing around marks are not kept).
  std::string decode(const std::vector<int64_t>& ids) const;
  /// The string of one id ("<pad>", "17", "?", "zoo", ...).
  const std::string& token(int64_t id) const;

  /// Appends the words of `texts` that are not yet known, sorted (official data, vocab_extend).
  /// Returns how many were added.
  int64_t extend(const std::vector<std::string>& texts);

  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  GsmTokenizer();
  void add_word(const std::string& word);

  std::vector<std::string> tokens_;                 ///< id -> token
  std::unordered_map<std::string, int64_t> words_;  ///< word -> id (words only)
};

}  // namespace hypnos::tasks
