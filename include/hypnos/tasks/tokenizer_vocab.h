// A pretrained model's tokenizer as far as hypnos needs it: which files it is (and their SHA-256,
// which token files record), how many ids it has, and ids -> text for display. Tokenising text is
// done in Python with the `tokenizers` library (scripts/tokenize_gsm.py, docs/tasks.md 3.5).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace hypnos::tasks {

/// The tokenizer files of a model folder: tokenizer.json when present, else vocab.json and
/// merges.txt (GPT-2 style). Throws std::runtime_error naming the folder when neither is there.
std::vector<std::string> tokenizer_files(const std::string& dir);

/// Lowercase hex SHA-256 of the concatenated bytes of tokenizer_files(dir), in that order (for
/// tokenizer.json: the file's own SHA-256). scripts/tokenize_gsm.py computes the same.
std::string tokenizer_sha256(const std::string& dir);

/// The vocabulary of a tokenizer (model vocabulary plus added tokens) and its decoder.
class TokenizerVocab {
 public:
  /// Reads tokenizer.json (model.vocab, added_tokens, decoder) or vocab.json (byte-level). Errors
  /// name the file and what was wrong.
  static TokenizerVocab load(const std::string& dir);

  /// One past the largest id (the ids a model must embed).
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  /// The token string of `id` as the vocabulary stores it ("Ġthe", "<|endoftext|>"); "" for an id
  /// without a token. Throws std::out_of_range for an id outside [0, size()).
  const std::string& token(int64_t id) const;
  /// Text of `ids` as the `tokenizers` library's decode(ids) gives it (special tokens skipped by
  /// default). Byte-level decoders map each token's characters back to bytes (a token with a
  /// character outside the byte map contributes its own UTF-8 bytes) and invalid UTF-8 becomes
  /// U+FFFD per maximal invalid subsequence, as in `tokenizers`. Other decoders are approximated
  /// by joining the token strings (display only).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const;
  bool byte_level() const { return byte_level_; }

 private:
  std::vector<std::string> tokens_;  ///< id -> token ("" where no token has the id)
  std::vector<uint8_t> special_;     ///< id -> 1 for special added tokens
  bool byte_level_ = false;
};

/// GPT-2's bytes_to_unicode map: byte b -> the code point that stands for it in a byte-level
/// vocabulary (printable ASCII and Latin-1 map to themselves, the other 68 bytes to 256..323).
std::vector<uint32_t> byte_level_code_points();

/// `bytes` as UTF-8 with each maximal invalid subsequence replaced by U+FFFD (the policy of
/// Rust's String::from_utf8_lossy and Python's bytes.decode("utf-8", "replace")).
std::string utf8_lossy(const std::string& bytes);

}  // namespace hypnos::tasks
