// Crash-safe files: a reader sees either the old or the new contents, never a torn write, even
// after kill -9 or power loss. The trick is always the same: write under a temporary name in the
// same directory, fsync it, rename() over the final name, then fsync the directory that holds the
// name.
//
// Temporaries are named `<final name>.tmp-<pid>`, so remove_stale_temporaries() can tell one left
// by a dead process (delete it) from one being written right now (keep it).
//
// Everything here uses POSIX calls directly: std::filesystem::remove_all crashes (a null call) in
// any binary linked against the torch 2.11 wheel's libtorch.so, which exports its own broken copy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace hypnos::io {

/// An open file descriptor for writing; every failure throws std::system_error naming the path.
class FileWriter {
 public:
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  ~FileWriter();

  /// Writes all `size` bytes (retrying short writes and EINTR).
  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  /// Bytes written through this object so far.
  uint64_t bytes_written() const { return bytes_written_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  friend void write_file_atomic(const std::filesystem::path&,
                                const std::function<void(FileWriter&)>&);
  FileWriter(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  /// fsync and close, both checked (close can report a deferred write error).
  void sync_and_close();

  int fd_;
  std::filesystem::path path_;
  uint64_t bytes_written_ = 0;
};

/// Creates or replaces `path` atomically with what `write` writes: temporary in the same directory,
/// fsync, rename, fsync of the directory. If `write` throws, the temporary is removed, `path` is
/// untouched, and the exception propagates.
void write_file_atomic(const std::filesystem::path& path,
                       const std::function<void(FileWriter&)>& write);
/// write_file_atomic for bytes already in memory.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

/// Whether `name` is a temporary of write_file_atomic or of a staged directory
/// (`<name>.tmp-<pid>`).
bool is_temporary_name(std::string_view name);

/// The whole contents of the regular file `path`. Throws std::system_error naming the path and the
/// reason (missing, not a regular file, no permission, read error).
std::string read_file(const std::filesystem::path& path);

/// fsync of a directory, which makes the names created, renamed or removed in it durable.
void fsync_directory(const std::filesystem::path& dir);
/// fsync of one regular file by name.
void fsync_file(const std::filesystem::path& file);

/// Removes `path` and, if it is a directory, everything below it (never following symbolic links).
/// A missing path is not an error. Use this rather than std::filesystem::remove_all (see above).
void remove_tree(const std::filesystem::path& path);

/// `<path>.tmp-<pid of this process>`.
std::filesystem::path temporary_sibling(const std::filesystem::path& path);

/// A directory built under a temporary name and published all at once:
///
///   io::StagedDirectory staged(run_dir / "checkpoints" / "step_00000030");
///   write model.safetensors, optimizer.safetensors, ... into staged.path();
///   staged.commit();   // now step_00000030 exists, complete, and durable
///
/// commit() fsyncs every file and directory below the staging directory, renames it to the final
/// name (atomically exchanging it with an existing directory of that name, which is then removed),
/// and fsyncs the parent. Destroyed without commit(), the staging directory is removed.
class StagedDirectory {
 public:
  /// Creates `<final_path>.tmp-<pid>` (and the parent of `final_path` if needed), empty.
  explicit StagedDirectory(std::filesystem::path final_path);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  /// Where to write the contents until commit().
  const std::filesystem::path& path() const { return staging_path_; }
  const std::filesystem::path& final_path() const { return final_path_; }
  void commit();
  bool committed() const { return committed_; }

 private:
  std::filesystem::path final_path_;
  std::filesystem::path staging_path_;
  bool committed_ = false;
};

/// Removes every `*.tmp-<pid>` entry of `dir` (files or directories, not recursing into others)
/// whose process is no longer alive, and returns what it removed. Temporaries of living processes,
/// this one included, are kept: they may be in the middle of a write.
std::vector<std::filesystem::path> remove_stale_temporaries(const std::filesystem::path& dir);

/// When LineAppender makes an appended line durable.
enum class LineSync {
  /// fdatasync after every line: survives power loss, costs a disk flush (about a millisecond or
  /// more) per line.
  kEveryLine,
  /// Only on sync() and on destruction: a line survives kill -9 of this process as soon as
  /// append() returns (it is in the kernel's page cache), but not a power loss before sync().
  kOnSync,
};

/// A file opened for appending whole lines (metrics.jsonl, events.jsonl). Opening repairs a torn
/// last line left by a crash (bytes after the last newline are cut off, with a warning), so a new
/// line never glues onto half of an old one. Each line goes out in one write() on an O_APPEND
/// descriptor, so concurrent appenders never interleave within a line.
class LineAppender {
 public:
  /// Default: LineSync::kEveryLine.
  explicit LineAppender(std::filesystem::path path, LineSync sync = LineSync::kEveryLine);
  ~LineAppender();
  LineAppender(const LineAppender&) = delete;
  LineAppender& operator=(const LineAppender&) = delete;

  /// Writes `line` plus '\n' with one write(). `line` must not contain '\n'.
  void append(std::string_view line);
  /// fdatasync: every line appended so far is durable (call before publishing a checkpoint).
  void sync();
  const std::filesystem::path& path() const { return path_; }
  /// Bytes of a torn last line that opening cut off (0 normally).
  uint64_t repaired_bytes() const { return repaired_bytes_; }

 private:
  int fd_;
  std::filesystem::path path_;
  LineSync sync_;
  uint64_t repaired_bytes_ = 0;
};

/// One-shot LineAppender(path).append(line).
void append_line(const std::filesystem::path& path, std::string_view line);

}  // namespace hypnos::io
