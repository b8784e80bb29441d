// Number and string formatting for the resolved config: shortest round-trip doubles that PyYAML
// still reads as floats (YAML 1.1 needs a '.' and a signed exponent), and escaped double-quoted
// strings.
#include <charconv>
#include <cmath>

#include "hypnos/config/visitors.h"

namespace hypnos::config {

std::string format_double(double x) {
  if (std::isnan(x)) return ".nan";
  if (std::isinf(x)) return x > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x);  // shortest text that round-trips
  std::string s(buf, end);
  const auto e = s.find('e');
  std::string mantissa = e == std::string::npos ? s : s.substr(0, e);
  std::string exponent = e == std::string::npos ? "" : s.substr(e + 1);
  if (mantissa.find('.') == std::string::npos) mantissa += ".0";
  if (!exponent.empty() && exponent[0] != '-' && exponent[0] != '+') exponent = "+" + exponent;
  return exponent.empty() ? mantissa : mantissa + "e" + exponent;
}

std::string format_bound(double x) {
  if (std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 1e15) {
    return std::to_string(static_cast<int64_t>(x));
  }
  return format_double(x);
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += c;
    }
  }
  return out + "\"";
}

std::string KeyLister::range_text(const Range& r) {
  const bool lo = std::isfinite(r.min), hi = std::isfinite(r.max);
  if (!lo && !hi) return "";
  return "[" + (lo ? format_bound(r.min) : std::string("-inf")) + ", " +
         (hi ? format_bound(r.max) : std::string("inf")) + "]";
}

}  // namespace hypnos::config
