// The visitors that walk an options struct's `visit` list (fields.h): Reader fills it from a
// Document, Writer prints it as YAML that reads back to the same struct byte for byte, KeyLister
// lists every key with its type, default and documentation (configs/README.md and "did you mean"
// come from it).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "hypnos/config/document.h"
#include "hypnos/config/fields.h"

namespace hypnos::config {

/// Shortest text that parses back to exactly `x` and that PyYAML reads as a float (always a '.').
std::string format_double(double x);
/// A range bound: integral values without a fraction ("64"), others as format_double.
std::string format_bound(double x);
/// A double-quoted YAML string with escapes.
std::string quote(std::string_view s);

namespace detail {
template <class E>
std::vector<std::string_view> enum_names() {
  const auto& names = EnumNames<E>::names;
  return std::vector<std::string_view>(names.begin(), names.end());
}

class PathStack {
 protected:
  std::string path(std::string_view key) const { return prefix_ + std::string(key); }
  void push(std::string_view key) { stack_.push_back(prefix_), prefix_ += std::string(key) + "."; }
  void pop() { prefix_ = stack_.back(), stack_.pop_back(); }
  size_t depth() const { return stack_.size(); }

 private:
  std::string prefix_;
  std::vector<std::string> stack_;
};
}  // namespace detail

class Reader : detail::PathStack {
 public:
  explicit Reader(Document& doc) : doc_(doc) {}

  template <class T>
  void field(std::string_view key, T& value, std::string_view /*doc*/, const Range& range = {}) {
    const std::string full = path(key);
    visited_.push_back(full);
    if constexpr (std::is_enum_v<T>) {
      size_t index = 0;
      if (doc_.read_choice(full, detail::enum_names<T>(), index)) value = static_cast<T>(index);
    } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
      doc_.read(full, value);
    } else {
      doc_.read(full, value, range);
    }
  }
  template <class S>
  void section(std::string_view key, S& s) {
    push(key);
    s.visit(*this);
    pop();
  }
  const std::vector<std::string>& visited() const { return visited_; }

 private:
  Document& doc_;
  std::vector<std::string> visited_;
};

class Writer : detail::PathStack {
 public:
  template <class T>
  void field(std::string_view key, const T& value, std::string_view /*doc*/, const Range& = {}) {
    out_ += std::string(2 * depth(), ' ') + std::string(key) + ": " + format(value) + "\n";
  }
  template <class S>
  void section(std::string_view key, S& s) {
    out_ += std::string(2 * depth(), ' ') + std::string(key) + ":\n";
    push(key);
    s.visit(*this);
    pop();
  }
  const std::string& text() const { return out_; }

 private:
  template <class T>
  static std::string format(const T& value) {
    if constexpr (std::is_enum_v<T>) {
      return std::string(EnumNames<T>::names.at(static_cast<size_t>(value)));
    } else if constexpr (std::is_same_v<T, bool>) {
      return value ? "true" : "false";
    } else if constexpr (std::is_same_v<T, int64_t>) {
      return std::to_string(value);
    } else if constexpr (std::is_same_v<T, double>) {
      return format_double(value);
    } else if constexpr (std::is_same_v<T, std::string>) {
      return quote(value);
    } else {
      static_assert(std::is_same_v<T, std::vector<int64_t>>, "unsupported config field type");
      std::string s = "[";
      for (size_t i = 0; i < value.size(); ++i) s += (i ? ", " : "") + std::to_string(value[i]);
      return s + "]";
    }
  }
  std::string out_;
};

/// One documented key: full path, type name, default (as YAML), range text, documentation.
struct KeyInfo {
  std::string key, type, default_value, range, doc;
};

class KeyLister : detail::PathStack {
 public:
  template <class T>
  void field(std::string_view key, const T& value, std::string_view doc, const Range& range = {}) {
    Writer w;
    w.field("x", value, doc);
    std::string def = w.text().substr(3);
    def.pop_back();
    keys_.push_back({path(key), type_name<T>(), def, range_text(range), std::string(doc)});
  }
  template <class S>
  void section(std::string_view key, S& s) {
    push(key);
    s.visit(*this);
    pop();
  }
  const std::vector<KeyInfo>& keys() const { return keys_; }

 private:
  template <class T>
  static std::string type_name() {
    if constexpr (std::is_enum_v<T>) {
      std::string s;
      for (auto n : EnumNames<T>::names) s += (s.empty() ? "" : " | ") + std::string(n);
      return s;
    } else if constexpr (std::is_same_v<T, bool>) {
      return "bool";
    } else if constexpr (std::is_same_v<T, int64_t>) {
      return "int";
    } else if constexpr (std::is_same_v<T, double>) {
      return "float";
    } else if constexpr (std::is_same_v<T, std::string>) {
      return "string";
    } else {
      return "list of int";
    }
  }
  static std::string range_text(const Range& r);
  std::vector<KeyInfo> keys_;
};

/// Loads `Root` from a YAML file plus `key.path=value` overrides; every error is a ConfigError.
template <class Root>
Root load(const std::string& file, const std::vector<std::string>& overrides) {
  Document doc =
      file.empty() ? Document::from_string("{}", "<defaults>") : Document::from_file(file);
  for (const auto& o : overrides) doc.apply_override(o);
  Root root;
  Reader reader(doc);
  root.visit(reader);
  doc.check_all_used(reader.visited());
  return root;
}

/// The resolved configuration as YAML: every key, in declaration order.
template <class Root>
std::string to_yaml(Root root) {
  Writer writer;
  root.visit(writer);
  return writer.text();
}

/// Every key of `Root` with its default (for the documentation and "did you mean").
template <class Root>
std::vector<KeyInfo> list_keys(Root root = Root()) {
  KeyLister lister;
  root.visit(lister);
  return lister.keys();
}

}  // namespace hypnos::config
