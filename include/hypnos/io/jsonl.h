// One JSON object per line, for metrics.jsonl and events.jsonl: a small record builder whose
// numbers read back exactly (shortest round-trip doubles, exact integers) and a durable writer.
//
//   io::JsonlWriter metrics(run_dir / "metrics.jsonl");
//   metrics.write(io::JsonRecord().add("step", step).add("loss", loss).add("split", "train"));
//
// Doubles are written in the shortest form that parses back to the same bits (std::to_chars), with
// ".0" added to integral values so Python reads a float. JSON has no NaN or infinity: they are
// written as the strings "NaN", "Infinity" and "-Infinity", which Python's float() accepts, so a
// diverged loss stays visible instead of turning into null. Strings are escaped per RFC 8259;
// invalid UTF-8 bytes become U+FFFD so every line stays valid JSON.
#pragma once
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace hypnos::io {

class LineAppender;
enum class LineSync;

/// A JSON object built field by field, in insertion order. Keys must be unique.
class JsonRecord {
 public:
  JsonRecord& add(std::string_view key, double value);
  JsonRecord& add(std::string_view key, bool value);
  JsonRecord& add(std::string_view key, std::string_view value);
  JsonRecord& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  template <std::integral I>
  requires(!std::same_as<I, bool>) JsonRecord& add(std::string_view key, I value) {
    if constexpr (std::is_signed_v<I>) {
      return add_signed(key, static_cast<int64_t>(value));
    } else {
      return add_unsigned(key, static_cast<uint64_t>(value));
    }
  }
  JsonRecord& add(std::string_view key, std::span<const int64_t> values);
  JsonRecord& add(std::string_view key, std::span<const double> values);
  /// A nested object.
  JsonRecord& add(std::string_view key, const JsonRecord& object);
  JsonRecord& add_null(std::string_view key);

  /// The object as one line of JSON, without a newline.
  std::string str() const { return "{" + body_ + "}"; }
  bool empty() const { return keys_.empty(); }

 private:
  JsonRecord& add_signed(std::string_view key, int64_t value);
  JsonRecord& add_unsigned(std::string_view key, uint64_t value);
  /// Appends `"key":` after checking that the key is new.
  void begin_field(std::string_view key);

  std::string body_;
  std::vector<std::string> keys_;
};

/// The JSON text of a double, as described at the top of this file.
std::string json_number(double value);
/// `value` as a quoted, escaped JSON string.
std::string json_string(std::string_view value);

/// Appends records to a JSONL file, one line each, through io::LineAppender (a torn last line from
/// a crash is cut off when the file is opened; see LineSync for when lines become durable).
class JsonlWriter {
 public:
  /// `sync` defaults to LineSync::kEveryLine.
  explicit JsonlWriter(const std::filesystem::path& path);
  JsonlWriter(const std::filesystem::path& path, LineSync sync);
  ~JsonlWriter();
  JsonlWriter(JsonlWriter&&) noexcept;
  JsonlWriter& operator=(JsonlWriter&&) noexcept;

  void write(const JsonRecord& record);
  /// Makes every record written so far durable (LineAppender::sync).
  void sync();
  const std::filesystem::path& path() const;

 private:
  std::unique_ptr<LineAppender> out_;
};

/// For resuming at a checkpoint: rewrites `path` atomically without the records whose integer field
/// `key` is greater than `last_kept` (e.g. key "step", the checkpoint's step), so the resumed run
/// does not log those steps twice. Lines without that field (or not JSON) are kept, except a torn
/// last line without its newline, which is dropped. When `archive` is given, the dropped records
/// (not a torn line) are first appended to it, so nothing a run logged is lost. Returns the number
/// of lines dropped; a missing file is not an error (0).
size_t drop_jsonl_records_after(const std::filesystem::path& path, std::string_view key,
                                int64_t last_kept, const std::filesystem::path& archive = {});

}  // namespace hypnos::io
