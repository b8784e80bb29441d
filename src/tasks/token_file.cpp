// Token-file reader: the index is parsed and checked line by line, the tokens mapped and checked
// once against the index (size, spans, ids), so that a bad file fails at start-up and not in the
// middle of a run.
#include "hypnos/tasks/token_file.h"

#include <nlohmann/json.hpp>

#include "hypnos/tasks/tokenizer_vocab.h"
#include "tasks/text_lines.h"

namespace hypnos::tasks {
namespace {

constexpr const char* kFormat = "hypnos-token-file";
constexpr int64_t kVersion = 1;
constexpr std::string_view kSuffix = ".tokens";

int64_t int_field(const nlohmann::json& obj, const char* key, const std::string& where) {
  if (!obj.contains(key)) throw std::runtime_error(where + ": missing field '" + key + "'");
  if (!obj[key].is_number_integer()) {
    throw std::runtime_error(where + ": field '" + key + "' = " + detail::clip(obj[key].dump()) +
                             " is not an integer");
  }
  return obj[key].get<int64_t>();
}

std::string string_field(const nlohmann::json& obj, const char* key, const std::string& where,
                         bool required) {
  if (!obj.contains(key) || obj[key].is_null()) {
    if (required) throw std::runtime_error(where + ": missing field '" + key + "'");
    return "";
  }
  if (!obj[key].is_string()) {
    throw std::runtime_error(where + ": field '" + key + "' is not a string");
  }
  return obj[key].get<std::string>();
}

}  // namespace

std::string TokenFile::index_path(const std::string& token_path) {
  if (token_path.size() <= kSuffix.size() ||
      token_path.compare(token_path.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
    throw std::invalid_argument("token file '" + token_path +
                                "': expected a name ending in .tokens (its index is "
                                "NAME.index.jsonl beside it)");
  }
  return token_path.substr(0, token_path.size() - kSuffix.size()) + ".index.jsonl";
}

TokenFile::TokenFile(const std::string& token_path, int64_t vocab_size)
    : index_(index_path(token_path)), tokens_(token_path) {
  std::ifstream in = detail::open_data_file(
      index_, "token-file index", " (written by scripts/tokenize_gsm.py with " + token_path + ")");
  std::string text;
  int64_t header_records = -1, header_tokens = -1;
  for (int64_t line_no = 1; detail::read_line(in, text, index_ + ":" + std::to_string(line_no));
       ++line_no) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = index_ + ":" + std::to_string(line_no);
    const nlohmann::json obj = detail::parse_object_line(text, where);
    if (header_records < 0) {  // the first line is the header
      if (!obj.contains("format") || obj["format"] != kFormat) {
        throw std::runtime_error(where + ": not a token-file header (expected \"format\": \"" +
                                 kFormat + "\")");
      }
      if (int_field(obj, "version", where) != kVersion) {
        throw std::runtime_error(where + ": version " + obj["version"].dump() +
                                 ", this hypnos reads version " + std::to_string(kVersion));
      }
      header_records = int_field(obj, "n_records", where);
      header_tokens = int_field(obj, "n_tokens", where);
      pad_id_ = obj.contains("pad_id") ? int_field(obj, "pad_id", where) : 0;
      tokenizer_sha256_ = string_field(obj, "tokenizer_sha256", where, true);
      if (tokens_.size() != static_cast<size_t>(header_tokens) * 4) {
        throw std::runtime_error(
            token_path + ": " + std::to_string(tokens_.size()) +
            " bytes, expected n_tokens x 4 = " + std::to_string(header_tokens * 4) +
            " (n_tokens = " + std::to_string(header_tokens) + " in " + index_ +
            "): the token file is truncated or not the one the index describes");
      }
      if (pad_id_ < 0 || (vocab_size > 0 && pad_id_ >= vocab_size)) {
        throw std::runtime_error(where + ": pad_id = " + std::to_string(pad_id_) +
                                 " is outside the vocabulary [0, " + std::to_string(vocab_size) +
                                 ")");
      }
      continue;
    }
    TokenRecord r;
    r.index_line = line_no;
    r.id = string_field(obj, "id", where, true);
    const std::string line = where;
    where += " (record '" + r.id + "')";
    r.offset = int_field(obj, "offset", where);
    r.length = int_field(obj, "length", where);
    r.answer_start = int_field(obj, "answer_start", where);
    r.answer_length = int_field(obj, "answer_length", where);
    r.answer = obj.contains("answer") ? int_field(obj, "answer", where) : 0;
    r.op = obj.contains("op") ? int_field(obj, "op", where) : 0;
    r.d = obj.contains("d") ? int_field(obj, "d", where) : 0;
    r.mode = string_field(obj, "mode", where, false);
    r.template_name = string_field(obj, "template", where, false);
    if (r.offset < 0 || r.length < 2 || r.offset + r.length > header_tokens) {
      throw std::runtime_error(where + ": tokens [" + std::to_string(r.offset) + ", " +
                               std::to_string(r.offset + r.length) + ") point past the end of " +
                               token_path + " (" + std::to_string(header_tokens) +
                               " tokens) or hold fewer than 2 tokens");
    }
    if (r.answer_start < 1 || r.answer_length < 1 || r.answer_start + r.answer_length > r.length) {
      throw std::runtime_error(where + ": answer span [" + std::to_string(r.answer_start) + ", " +
                               std::to_string(r.answer_start + r.answer_length) +
                               ") is not inside the record's tokens [1, " +
                               std::to_string(r.length) + ")");
    }
    if (vocab_size > 0) {
      for (int64_t i = r.offset; i < r.offset + r.length; ++i) {
        const int64_t id = token_at(i);
        if (id >= vocab_size) {
          throw std::runtime_error(token_path + ": token " + std::to_string(i - r.offset) +
                                   " of record '" + r.id + "' (" + line +
                                   ") = " + std::to_string(id) + " is outside the vocabulary [0, " +
                                   std::to_string(vocab_size) + ")");
        }
      }
    }
    max_length_ = std::max(max_length_, r.length);
    records_.push_back(std::move(r));
  }
  if (header_records < 0) throw std::runtime_error(index_ + ": no header line");
  if (static_cast<int64_t>(records_.size()) != header_records) {
    throw std::runtime_error(index_ + ": " + std::to_string(records_.size()) +
                             " records, the header says n_records = " +
                             std::to_string(header_records) + " (truncated index?)");
  }
  if (records_.empty()) throw std::runtime_error(index_ + ": no records");
}

int64_t TokenFile::token_at(int64_t i) const {
  const uint8_t* p = tokens_.data() + 4 * i;  // little-endian whatever the host's order
  return static_cast<int64_t>(uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
                              uint32_t{p[3]} << 24);
}

std::vector<int64_t> TokenFile::tokens(size_t r) const {
  const TokenRecord& rec = records_.at(r);
  std::vector<int64_t> out(rec.length);
  for (int64_t i = 0; i < rec.length; ++i) out[i] = token_at(rec.offset + i);
  return out;
}

void TokenFile::check_tokenizer(const std::string& dir) const {
  const std::string actual = tasks::tokenizer_sha256(dir);
  if (actual != tokenizer_sha256_) {
    std::string files;
    for (const std::string& f : tokenizer_files(dir)) files += (files.empty() ? "" : " + ") + f;
    throw std::runtime_error(index_ + ": tokenizer_sha256 " + tokenizer_sha256_ + " differs from " +
                             files + " (" + actual +
                             "): the token file was written with another tokenizer");
  }
}

}  // namespace hypnos::tasks
