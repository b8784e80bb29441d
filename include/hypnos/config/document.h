// A configuration document: the YAML file flattened to `a.b.c -> value` with the origin of every
// value (file:line or "command line"), overrides applied on top, and typed reads that record which
// keys were used so that anything left over is reported as unknown, with the nearest known key.
#pragma once
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "hypnos/config/fields.h"

namespace hypnos::config {

class Document {
 public:
  Document();
  ~Document();
  Document(Document&&) noexcept;
  Document& operator=(Document&&) noexcept;

  /// Parses a YAML file (a mapping of mappings). Throws ConfigError naming file:line for syntax
  /// errors, duplicate keys and non-mapping sections.
  static Document from_file(const std::string& path);
  /// Same, from text; `origin` names it in messages.
  static Document from_string(const std::string& text, const std::string& origin);

  /// Applies `key.path=value` (the value is parsed as YAML: 3, 2.5e-3, true, name, [0, 2]).
  void apply_override(std::string_view assignment);

  // Typed reads of one full key path. They return false (value untouched) when the key is absent;
  // they throw ConfigError naming the key, the value, what was expected and the origin otherwise.
  bool read(const std::string& key, bool& value);
  bool read(const std::string& key, int64_t& value, const Range& range);
  bool read(const std::string& key, double& value, const Range& range);
  bool read(const std::string& key, std::string& value);
  bool read(const std::string& key, std::vector<int64_t>& value, const Range& range);
  /// Enum: the value must be one of `names`; returns its index.
  bool read_choice(const std::string& key, const std::vector<std::string_view>& names,
                   size_t& index);

  /// Throws ConfigError for the first key that no read asked for, suggesting the nearest of
  /// `known`.
  void check_all_used(const std::vector<std::string>& known) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The entry of `candidates` nearest to `key` by edit distance, or "" when none is close enough.
std::string nearest_key(std::string_view key, const std::vector<std::string>& candidates);

}  // namespace hypnos::config
