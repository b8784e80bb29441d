// Bounded line reading and short quotes for the task data loaders (text_lines.h).
#include "tasks/text_lines.h"

#include <sys/stat.h>

#include <stdexcept>

namespace hypnos::tasks::detail {

std::ifstream open_data_file(const std::string& path, const std::string& what,
                             const std::string& hint) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw std::runtime_error(what + " '" + path + "' is a directory, not a file" + hint);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + what + " '" + path + "'" + hint);
  if (in.peek() == std::ifstream::traits_type::eof()) {
    throw std::runtime_error(what + " '" + path + "' is empty");
  }
  return in;
}

bool read_line(std::istream& in, std::string& line, const std::string& where) {
  line.clear();
  char buffer[1 << 16];
  for (;;) {
    in.get(buffer, sizeof buffer, '\n');  // stops before the '\n', or when the buffer is full
    line.append(buffer, static_cast<size_t>(in.gcount()));
    if (line.size() > kMaxLineBytes) {
      throw std::runtime_error(where + ": line longer than " + std::to_string(kMaxLineBytes >> 20) +
                               " MiB, starting " + shorten(line));
    }
    if (in.bad()) throw std::runtime_error(where + ": read error");
    if (in.eof()) return !line.empty();
    if (in.fail()) in.clear();  // nothing was read: the '\n' is next
    if (in.peek() == '\n') {
      in.ignore(1);
      return true;
    }
  }
}

std::string shorten(std::string_view text, size_t max_bytes) {
  std::string out(1, '\'');
  out += clip(text, max_bytes);
  // clip ends a cut text with "... (N bytes)": the quote goes before the length.
  const size_t cut = text.size() > max_bytes ? out.rfind(" (") : std::string::npos;
  if (cut == std::string::npos) return out += '\'';
  return out.insert(cut, 1, '\'');
}

std::string clip(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::string out(text.substr(0, max_bytes));
  out += "... (";
  out += std::to_string(text.size());
  out += " bytes)";
  return out;
}

}  // namespace hypnos::tasks::detail
