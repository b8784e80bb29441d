// Task data files read line by line as untrusted input: a missing path, a directory or an empty
// file is an error naming the path; a line is read with bounded memory; and an error quotes only a
// short prefix of a line, so a 100 MB line never becomes a 100 MB message.
#pragma once
#include <cstddef>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace hypnos::tasks::detail {

/// Lines longer than this are refused (the longest GSM-Infinite problem is a few hundred kB).
inline constexpr size_t kMaxLineBytes = size_t{16} << 20;

/// Opens `path`, a `what` ("GSM-Infinite name list"). std::runtime_error naming both when the path
/// is missing or unreadable ("cannot open <what> '<path>'" + `hint`), a directory, or empty.
std::ifstream open_data_file(const std::string& path, const std::string& what,
                             const std::string& hint = "");

/// The next line of `in` into `line`, without its '\n'; false at the end. A line longer than
/// kMaxLineBytes is a std::runtime_error "<where>: line longer than ..." (read no further).
bool read_line(std::istream& in, std::string& line, const std::string& where);

/// `text` quoted for an error message: whole when short ('text'), else its first `max_bytes` bytes
/// and its length ('tex...' (123456 bytes)).
std::string shorten(std::string_view text, size_t max_bytes = 80);
/// The same without the quotes, for text that carries its own (a JSON value, a parser's message).
std::string clip(std::string_view text, size_t max_bytes = 80);

/// One JSONL line as a JSON object (Json: nlohmann::json or ordered_json); std::runtime_error
/// "<where>: not JSON (...)" quoting a short prefix of the line, or "<where>: not a JSON object".
template <class Json = nlohmann::json>
Json parse_object_line(const std::string& text, const std::string& where) {
  Json obj;
  try {
    obj = Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // The parser quotes what it read last, which can be the whole line.
    throw std::runtime_error(where + ": not JSON (" + clip(e.what(), 160) + "), line starting " +
                             shorten(text, 60));
  }
  if (!obj.is_object()) throw std::runtime_error(where + ": not a JSON object");
  return obj;
}

}  // namespace hypnos::tasks::detail
