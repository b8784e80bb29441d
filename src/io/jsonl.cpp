// JSONL records: hand-written JSON output (no allocation-heavy DOM per metrics line) with exact
// number formatting; nlohmann-json only to read lines back in drop_jsonl_records_after.
#include "hypnos/io/jsonl.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "hypnos/io/durable.h"

namespace hypnos::io {
namespace {

/// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not valid UTF-8
/// (overlong forms, surrogates and code points above U+10FFFF included).
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  size_t length;
  uint32_t code;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code = lead & 0x07;
  } else {
    return 0;
  }
  if (i + length > s.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if ((length == 3 && code < 0x800) || (length == 4 && code < 0x10000) || code > 0x10FFFF ||
      (code >= 0xD800 && code <= 0xDFFF)) {
    return 0;
  }
  return length;
}

const char* short_escape(unsigned char c) {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default:
      return nullptr;
  }
}

void append_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (const char* escape = short_escape(c)) {
      out += escape;
      ++i;
      continue;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
      continue;
    }
    const size_t length = utf8_sequence_length(s, i);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER for one invalid byte
      ++i;
    } else {
      out.append(s.substr(i, length));
      i += length;
    }
  }
  out += '"';
}

void append_number(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "\"NaN\"";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  const std::string_view text(buffer, static_cast<size_t>(result.ptr - buffer));
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

template <class T>
void append_integer(std::string& out, T value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

}  // namespace

std::string json_number(double value) {
  std::string out;
  append_number(out, value);
  return out;
}

std::string json_string(std::string_view value) {
  std::string out;
  append_escaped(out, value);
  return out;
}

void JsonRecord::begin_field(std::string_view key) {
  for (const std::string& existing : keys_) {
    if (existing == key) {
      throw std::invalid_argument("JsonRecord: duplicate key '" + std::string(key) + "'");
    }
  }
  keys_.emplace_back(key);
  if (!body_.empty()) body_ += ',';
  append_escaped(body_, key);
  body_ += ':';
}

JsonRecord& JsonRecord::add(std::string_view key, double value) {
  begin_field(key);
  append_number(body_, value);
  return *this;
}

JsonRecord& JsonRecord::add(std::string_view key, bool value) {
  begin_field(key);
  body_ += value ? "true" : "false";
  return *this;
}

JsonRecord& JsonRecord::add(std::string_view key, std::string_view value) {
  begin_field(key);
  append_escaped(body_, value);
  return *this;
}

JsonRecord& JsonRecord::add_signed(std::string_view key, int64_t value) {
  begin_field(key);
  append_integer(body_, value);
  return *this;
}

JsonRecord& JsonRecord::add_unsigned(std::string_view key, uint64_t value) {
  begin_field(key);
  append_integer(body_, value);
  return *this;
}

JsonRecord& JsonRecord::add(std::string_view key, std::span<const int64_t> values) {
  begin_field(key);
  body_ += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) body_ += ',';
    append_integer(body_, values[i]);
  }
  body_ += ']';
  return *this;
}

JsonRecord& JsonRecord::add(std::string_view key, std::span<const double> values) {
  begin_field(key);
  body_ += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) body_ += ',';
    append_number(body_, values[i]);
  }
  body_ += ']';
  return *this;
}

JsonRecord& JsonRecord::add(std::string_view key, const JsonRecord& object) {
  begin_field(key);
  body_ += object.str();
  return *this;
}

JsonRecord& JsonRecord::add_null(std::string_view key) {
  begin_field(key);
  body_ += "null";
  return *this;
}

JsonlWriter::JsonlWriter(const std::filesystem::path& path)
    : out_(std::make_unique<LineAppender>(path)) {}
JsonlWriter::JsonlWriter(const std::filesystem::path& path, LineSync sync)
    : out_(std::make_unique<LineAppender>(path, sync)) {}
JsonlWriter::~JsonlWriter() = default;
JsonlWriter::JsonlWriter(JsonlWriter&&) noexcept = default;
JsonlWriter& JsonlWriter::operator=(JsonlWriter&&) noexcept = default;

void JsonlWriter::write(const JsonRecord& record) {
  out_->append(record.str());
}

void JsonlWriter::sync() {
  out_->sync();
}

const std::filesystem::path& JsonlWriter::path() const {
  return out_->path();
}

size_t drop_jsonl_records_after(const std::filesystem::path& path, std::string_view key,
                                int64_t last_kept, const std::filesystem::path& archive) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path)) return 0;
    throw std::runtime_error("drop_jsonl_records_after: cannot read '" + path.string() + "'");
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string kept;
  std::vector<std::string_view> moved;  // complete records, for the archive
  size_t dropped = 0;
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t newline = text.find('\n', begin);
    if (newline == std::string::npos) {  // torn last line
      ++dropped;
      break;
    }
    const std::string_view line(text.data() + begin, newline - begin);
    begin = newline + 1;
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object()) {
      const auto it = record.find(key);
      if (it != record.end() && it->is_number_integer() && it->get<int64_t>() > last_kept) {
        ++dropped;
        moved.push_back(line);
        continue;
      }
    }
    kept.append(line);
    kept += '\n';
  }
  if (!archive.empty() && !moved.empty()) {
    // Before the rewrite: a crash in between leaves a record in both files, never in neither.
    LineAppender out(archive, LineSync::kOnSync);
    for (const std::string_view line : moved) out.append(line);
    out.sync();
  }
  if (dropped > 0) write_file_atomic(path, kept);
  return dropped;
}

}  // namespace hypnos::io
