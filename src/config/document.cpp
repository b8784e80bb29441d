// Document: YAML (yaml-cpp) flattened to full key paths, with origins, duplicate-key detection,
// typed reads that check ranges, and the unknown-key report with a "did you mean" suggestion.
#include "hypnos/config/document.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/io/durable.h"

namespace hypnos::config {

struct Document::Impl {
  struct Entry {
    YAML::Node value;
    std::string origin;  // "file:line" or "command line"
    bool used = false;
  };
  std::map<std::string, Entry> entries;  // full key path -> scalar or sequence
  std::vector<std::string> order;        // insertion order, for deterministic error reporting

  void put(const std::string& key, YAML::Node value, std::string origin) {
    if (!entries.count(key)) order.push_back(key);
    entries[key] = Entry{std::move(value), std::move(origin), false};
  }

  void flatten(const YAML::Node& node, const std::string& prefix, const std::string& file) {
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const std::string line = file + ":" + std::to_string(kv.first.Mark().line + 1);
      if (!kv.first.IsScalar()) throw ConfigError(line + ": keys must be plain names");
      const std::string name = kv.first.Scalar();
      const std::string key = prefix.empty() ? name : prefix + "." + name;
      if (!seen.insert(name).second) throw ConfigError(line + ": duplicate key '" + key + "'");
      if (kv.second.IsMap()) {
        flatten(kv.second, key, file);
      } else if (kv.second.IsNull() && prefix.empty()) {
        continue;  // an empty section ("train:") sets nothing
      } else {
        put(key, kv.second, line);
      }
    }
  }

  Entry* find(const std::string& key) {
    auto it = entries.find(key);
    if (it == entries.end()) return nullptr;
    it->second.used = true;
    return &it->second;
  }
};

namespace {

[[noreturn]] void fail(const std::string& key, const std::string& what, const std::string& origin) {
  throw ConfigError("config error: " + key + ": " + what + " (" + origin + ")");
}

std::string scalar_of(const YAML::Node& node, const std::string& key, const std::string& origin,
                      const char* expected) {
  if (node.IsNull()) fail(key, std::string("expected ") + expected + ", got no value", origin);
  if (!node.IsScalar())
    fail(key, std::string("expected ") + expected + ", got a list or a map", origin);
  return node.Scalar();
}

void check_range(const std::string& key, double x, const Range& range, const std::string& text,
                 const std::string& origin) {
  if (!(x >= range.min && x <= range.max)) {  // also catches NaN
    fail(key,
         text + " is out of range [" + format_bound(range.min) + ", " + format_bound(range.max) +
             "]",
         origin);
  }
}

bool parse_int(const std::string& s, int64_t& out) {
  const char* begin = s.data();
  const char* end = s.data() + s.size();
  if (begin != end && *begin == '+') ++begin;
  auto [ptr, ec] = std::from_chars(begin, end, out);
  return ec == std::errc() && ptr == end && begin != end;
}

bool parse_double(const std::string& s, double& out) {
  if (s == ".inf" || s == "+.inf") return out = INFINITY, true;
  if (s == "-.inf") return out = -INFINITY, true;
  const char* begin = s.data();
  const char* end = s.data() + s.size();
  if (begin != end && *begin == '+') ++begin;
  auto [ptr, ec] = std::from_chars(begin, end, out);
  return ec == std::errc() && ptr == end && begin != end && std::isfinite(out);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

Document::Document() : impl_(std::make_unique<Impl>()) {}
Document::~Document() = default;
Document::Document(Document&&) noexcept = default;
Document& Document::operator=(Document&&) noexcept = default;

Document Document::from_string(const std::string& text, const std::string& origin) {
  Document doc;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return doc;
  if (!root.IsMap()) throw ConfigError(origin + ": the top level must be a mapping of sections");
  doc.impl_->flatten(root, "", origin);
  return doc;
}

Document Document::from_file(const std::string& path) {
  std::string text;
  try {
    text = io::read_file(path);  // a directory or a missing file is an error, not an empty config
  } catch (const std::system_error& e) {
    throw ConfigError(std::string("config error: config file: ") + e.what());
  }
  return from_string(text, path);
}

void Document::apply_override(std::string_view assignment) {
  const auto eq = assignment.find('=');
  const std::string text(assignment);
  if (eq == std::string_view::npos || eq == 0) {
    throw ConfigError("config error: override '" + text + "' is not of the form key.path=value");
  }
  const std::string key(assignment.substr(0, eq));
  const std::string value(assignment.substr(eq + 1));
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw ConfigError("config error: " + key + ": cannot parse value '" + value +
                      "' (command line): " + e.msg);
  }
  if (node.IsNull()) node = YAML::Node(value);  // "key=" sets an empty string
  if (node.IsMap()) {
    throw ConfigError("config error: " + key +
                      ": override a single key, not a section (command line)");
  }
  impl_->put(key, node, "command line");
}

bool Document::read(const std::string& key, bool& value) {
  Impl::Entry* e = impl_->find(key);
  if (!e) return false;
  const std::string s = scalar_of(e->value, key, e->origin, "true or false");
  if (s == "true") return value = true, true;
  if (s == "false") return value = false, true;
  fail(key, "expected true or false, got '" + s + "'", e->origin);
}

bool Document::read(const std::string& key, int64_t& value, const Range& range) {
  Impl::Entry* e = impl_->find(key);
  if (!e) return false;
  const std::string s = scalar_of(e->value, key, e->origin, "an integer");
  int64_t x = 0;
  if (!parse_int(s, x)) fail(key, "expected an integer, got '" + s + "'", e->origin);
  check_range(key, static_cast<double>(x), range, s, e->origin);
  value = x;
  return true;
}

bool Document::read(const std::string& key, double& value, const Range& range) {
  Impl::Entry* e = impl_->find(key);
  if (!e) return false;
  const std::string s = scalar_of(e->value, key, e->origin, "a number");
  double x = 0;
  if (!parse_double(s, x)) fail(key, "expected a number, got '" + s + "'", e->origin);
  check_range(key, x, range, s, e->origin);
  value = x;
  return true;
}

bool Document::read(const std::string& key, std::string& value) {
  Impl::Entry* e = impl_->find(key);
  if (!e) return false;
  value = scalar_of(e->value, key, e->origin, "a string");
  return true;
}

bool Document::read(const std::string& key, std::vector<int64_t>& value, const Range& range) {
  Impl::Entry* e = impl_->find(key);
  if (!e) return false;
  if (!e->value.IsSequence()) fail(key, "expected a list of integers like [0, 2]", e->origin);
  std::vector<int64_t> out;
  for (const auto& item : e->value) {
    const std::string s = item.IsScalar() ? item.Scalar() : std::string("<nested>");
    int64_t x = 0;
    if (!item.IsScalar() || !parse_int(s, x)) {
      fail(key, "expected a list of integers, found '" + s + "'", e->origin);
    }
    check_range(key, static_cast<double>(x), range, s, e->origin);
    out.push_back(x);
  }
  value = std::move(out);
  return true;
}

bool Document::read_choice(const std::string& key, const std::vector<std::string_view>& names,
                           size_t& index) {
  Impl::Entry* e = impl_->find(key);
  if (!e) return false;
  std::string choices;
  for (auto n : names) choices += (choices.empty() ? "" : " | ") + std::string(n);
  const std::string s = scalar_of(e->value, key, e->origin, choices.c_str());
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == s) return index = i, true;
  }
  std::string message = "expected one of " + choices + ", got '" + s + "'";
  const std::string near = nearest_key(s, std::vector<std::string>(names.begin(), names.end()));
  if (!near.empty()) message += "; did you mean " + near + "?";
  fail(key, message, e->origin);
}

void Document::check_all_used(const std::vector<std::string>& known) const {
  for (const auto& key : impl_->order) {
    const Impl::Entry& e = impl_->entries.at(key);
    if (e.used) continue;
    std::string message = "config error: unknown key '" + key + "' (" + e.origin + ")";
    const std::string near = nearest_key(key, known);
    if (!near.empty()) message += "; did you mean " + near + "?";
    throw ConfigError(message);
  }
}

std::string nearest_key(std::string_view key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& c : candidates) {
    size_t d = edit_distance(key, c);
    // A key in the wrong section ("n_passes" for "sleep.n_passes") is near too.
    const auto dot = c.rfind('.');
    if (dot != std::string::npos) d = std::min(d, edit_distance(key, c.substr(dot + 1)) + 1);
    if (d < best_distance) best_distance = d, best = c;
  }
  const size_t limit = std::max<size_t>(2, key.size() / 3);
  return best_distance <= limit ? best : std::string();
}

}  // namespace hypnos::config
