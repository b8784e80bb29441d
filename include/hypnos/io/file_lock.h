// An exclusive advisory lock on a file, held for as long as the object lives: flock(2) on an open
// descriptor, so the kernel releases it when the process dies (kill -9 included) and a dead holder
// never leaves a stale lock behind. Two objects, in one process or in two, exclude each other.
//
//   auto lock = io::ExclusiveFileLock::try_lock(run_dir / "run.lock");
//   if (!lock) ... another process holds it: io::lock_holder_pid(run_dir / "run.lock") says which
#pragma once
#include <filesystem>
#include <optional>

namespace hypnos::io {

class ExclusiveFileLock {
 public:
  /// Opens (creating it if needed) and locks `path` without waiting; nullopt when another open
  /// description holds the lock. Throws std::system_error naming the path when it cannot be opened.
  static std::optional<ExclusiveFileLock> try_lock(const std::filesystem::path& path);

  ExclusiveFileLock(ExclusiveFileLock&& other) noexcept;
  ExclusiveFileLock& operator=(ExclusiveFileLock&& other) noexcept;
  ExclusiveFileLock(const ExclusiveFileLock&) = delete;
  ExclusiveFileLock& operator=(const ExclusiveFileLock&) = delete;
  ~ExclusiveFileLock();  ///< releases the lock

  const std::filesystem::path& path() const { return path_; }

 private:
  ExclusiveFileLock(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

/// The pid of the process holding a flock on `path` (from /proc/locks), or 0 when none is found
/// (no holder, or a system without /proc/locks).
long lock_holder_pid(const std::filesystem::path& path);

}  // namespace hypnos::io
