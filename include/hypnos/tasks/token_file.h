// Token files (docs/tasks.md 3.5): text tokenised by a pretrained model's own tokenizer, written
// by scripts/tokenize_gsm.py as NAME.tokens (little-endian uint32 ids, all records back to back)
// and NAME.index.jsonl (a header line with the tokenizer's SHA-256, then one line per record with
// its offset, length and answer span). The tokens are memory-mapped, never copied whole.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hypnos/io/mapped_file.h"

namespace hypnos::tasks {

/// One record of the index: tokens [offset, offset + length) of the token file, whose answer is
/// tokens [answer_start, answer_start + answer_length) of the record (the loss is scored there).
struct TokenRecord {
  std::string id;  ///< where the text came from ("gsm.jsonl:17")
  int64_t offset = 0;
  int64_t length = 0;
  int64_t answer_start = 0;   ///< within the record, >= 1 (a prompt precedes the answer)
  int64_t answer_length = 0;  ///< >= 1, answer_start + answer_length <= length
  int64_t answer = 0;
  int64_t op = 0;
  int64_t d = 0;
  std::string mode;           ///< "forward" | "reverse" | ""
  std::string template_name;  ///< "zoo" | "teachers" | "movies" | the source's name | ""
  int64_t index_line = 0;     ///< its line in the index file (for error messages)
};

class TokenFile {
 public:
  /// NAME.tokens -> NAME.index.jsonl. Throws std::invalid_argument when `token_path` does not end
  /// in ".tokens".
  static std::string index_path(const std::string& token_path);

  /// Reads the index and maps the tokens. Every check names the file and, for a record, its index
  /// line and id: a header that is not a hypnos token-file header, a token file whose size is not
  /// the header's n_tokens x 4 bytes (truncated), a record outside the token file or with an answer
  /// span outside the record, a record count unlike the header's, and (when vocab_size > 0) a token
  /// id >= vocab_size. Throws std::runtime_error.
  TokenFile(const std::string& token_path, int64_t vocab_size);

  /// Throws std::runtime_error naming both when the SHA-256 of the tokenizer in `dir`
  /// (tokenizer_sha256) differs from the one the index records: the ids would mean other text.
  void check_tokenizer(const std::string& dir) const;

  const std::vector<TokenRecord>& records() const { return records_; }
  /// The ids of record `r` (0-based).
  std::vector<int64_t> tokens(size_t r) const;
  /// Token `i` of the whole file.
  int64_t token_at(int64_t i) const;

  const std::string& path() const { return tokens_.path(); }
  const std::string& index() const { return index_; }
  const std::string& tokenizer_sha256() const { return tokenizer_sha256_; }
  int64_t n_tokens() const { return static_cast<int64_t>(tokens_.size() / 4); }
  int64_t pad_id() const { return pad_id_; }
  int64_t max_length() const { return max_length_; }

 private:
  std::string index_;  // before tokens_: the constructor checks the name before mapping
  io::MappedFile tokens_;
  std::string tokenizer_sha256_;
  std::vector<TokenRecord> records_;
  int64_t pad_id_ = 0;
  int64_t max_length_ = 0;
};

}  // namespace hypnos::tasks
