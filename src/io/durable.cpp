// POSIX implementation of crash-safe writes: every call is checked and every error names the path
// and the errno text, because "Input/output error" alone does not say which disk filled up.
#include "hypnos/io/durable.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>  // renameat2
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include "hypnos/log.h"

namespace hypnos::io {
namespace {

[[noreturn]] void throw_errno(int err, std::string_view what, const std::filesystem::path& path) {
  throw std::system_error(err, std::generic_category(),
                          std::string(what) + " '" + path.string() + "'");
}

std::filesystem::path parent_or_dot(const std::filesystem::path& path) {
  std::filesystem::path parent = path.parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

int open_checked(const std::filesystem::path& path, int flags, mode_t mode = 0644) {
  for (;;) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd >= 0) return fd;
    if (errno != EINTR) throw_errno(errno, "open", path);
  }
}

void write_all_fd(int fd, const void* data, size_t size, const std::filesystem::path& path) {
  auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "write", path);
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
}

void fsync_fd(int fd, const std::filesystem::path& path) {
  if (::fsync(fd) != 0) throw_errno(errno, "fsync", path);
}

bool lstat_is_directory(const std::filesystem::path& path, bool* exists) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      *exists = false;
      return false;
    }
    throw_errno(errno, "lstat", path);
  }
  *exists = true;
  return S_ISDIR(st.st_mode);
}

/// Names in `dir` other than "." and "..".
std::vector<std::string> list_directory(const std::filesystem::path& dir) {
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) throw_errno(errno, "opendir", dir);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(handle)) {
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int err = errno;
  ::closedir(handle);
  if (err != 0) throw_errno(err, "readdir", dir);
  return names;
}

/// fsyncs every regular file and directory below `dir`, children before their directory.
void fsync_tree(const std::filesystem::path& dir) {
  for (const std::string& name : list_directory(dir)) {
    const std::filesystem::path child = dir / name;
    bool exists = false;
    if (lstat_is_directory(child, &exists)) {
      fsync_tree(child);
    } else if (exists) {
      fsync_file(child);
    }
  }
  fsync_directory(dir);
}

/// The pid of a `<name>.tmp-<pid>` entry, or -1 when `name` is not of that form.
long temporary_pid(std::string_view name) {
  const size_t at = name.rfind(".tmp-");
  if (at == std::string_view::npos || at == 0) return -1;
  const std::string_view digits = name.substr(at + 5);
  if (digits.empty() || digits.size() > 9) return -1;
  long pid = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    pid = pid * 10 + (c - '0');
  }
  return pid;
}

bool process_alive(long pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

bool is_temporary_name(std::string_view name) {
  return temporary_pid(name) >= 0;
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write(const void* data, size_t size) {
  write_all_fd(fd_, data, size, path_);
  bytes_written_ += size;
}

void FileWriter::sync_and_close() {
  fsync_fd(fd_, path_);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw_errno(errno, "close", path_);
}

void write_file_atomic(const std::filesystem::path& path,
                       const std::function<void(FileWriter&)>& write) {
  const std::filesystem::path temporary = temporary_sibling(path);
  FileWriter writer(open_checked(temporary, O_WRONLY | O_CREAT | O_TRUNC), temporary);
  try {
    write(writer);
    writer.sync_and_close();
    if (::rename(temporary.c_str(), path.c_str()) != 0) throw_errno(errno, "rename to", path);
  } catch (...) {
    ::unlink(temporary.c_str());
    throw;
  }
  fsync_directory(parent_or_dot(path));
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  write_file_atomic(path, [bytes](FileWriter& out) { out.write(bytes); });
}

void fsync_directory(const std::filesystem::path& dir) {
  const int fd = open_checked(dir, O_RDONLY | O_DIRECTORY);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw_errno(err, "fsync directory", dir);
}

void fsync_file(const std::filesystem::path& file) {
  const int fd = open_checked(file, O_RDONLY);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw_errno(err, "fsync", file);
}

void remove_tree(const std::filesystem::path& path) {
  bool exists = false;
  if (lstat_is_directory(path, &exists)) {
    for (const std::string& name : list_directory(path)) remove_tree(path / name);
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "rmdir", path);
  } else if (exists) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "unlink", path);
  }
}

std::filesystem::path temporary_sibling(const std::filesystem::path& path) {
  std::filesystem::path sibling = path;
  sibling += ".tmp-" + std::to_string(::getpid());
  return sibling;
}

StagedDirectory::StagedDirectory(std::filesystem::path final_path)
    : final_path_(std::move(final_path)), staging_path_(temporary_sibling(final_path_)) {
  if (final_path_.filename().empty()) {
    throw std::invalid_argument("StagedDirectory: final_path '" + final_path_.string() +
                                "' must name a directory (no trailing '/')");
  }
  std::filesystem::create_directories(parent_or_dot(final_path_));
  remove_tree(staging_path_);  // a leftover of an earlier failed attempt by this same process
  if (::mkdir(staging_path_.c_str(), 0755) != 0) throw_errno(errno, "mkdir", staging_path_);
}

StagedDirectory::~StagedDirectory() {
  if (committed_) return;
  try {
    remove_tree(staging_path_);
  } catch (const std::exception& e) {
    log::warn(std::string("could not remove an uncommitted staging directory: ") + e.what());
  }
}

void StagedDirectory::commit() {
  if (committed_) throw std::logic_error("StagedDirectory::commit called twice");
  fsync_tree(staging_path_);
  const std::filesystem::path parent = parent_or_dot(final_path_);
  if (::rename(staging_path_.c_str(), final_path_.c_str()) == 0) {
    committed_ = true;
    fsync_directory(parent);
    return;
  }
  if (errno != ENOTEMPTY && errno != EEXIST)
    throw_errno(errno, "rename staging directory to", final_path_);
  // A complete directory of that name exists already: swap atomically, then drop the old one, so a
  // crash at any point leaves one complete version under the final name.
  if (::renameat2(AT_FDCWD, staging_path_.c_str(), AT_FDCWD, final_path_.c_str(),
                  RENAME_EXCHANGE) != 0) {
    throw_errno(errno, "exchange staging directory with", final_path_);
  }
  committed_ = true;
  fsync_directory(parent);
  remove_tree(staging_path_);  // now holds the replaced version
  fsync_directory(parent);
}

std::vector<std::filesystem::path> remove_stale_temporaries(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> removed;
  for (const std::string& name : list_directory(dir)) {
    const long pid = temporary_pid(name);
    if (pid < 0 || process_alive(pid)) continue;
    remove_tree(dir / name);
    removed.push_back(dir / name);
  }
  if (!removed.empty()) fsync_directory(dir);
  return removed;
}

LineAppender::LineAppender(std::filesystem::path path, LineSync sync)
    : path_(std::move(path)), sync_(sync) {
  bool exists = false;
  if (lstat_is_directory(path_, &exists)) throw_errno(EISDIR, "open for appending", path_);
  fd_ = open_checked(path_, O_RDWR | O_CREAT | O_APPEND);
  try {
    if (!exists) fsync_directory(parent_or_dot(path_));
    struct stat st;
    if (::fstat(fd_, &st) != 0) throw_errno(errno, "fstat", path_);
    // Find the last '\n' scanning back from the end; everything after it is a torn line.
    off_t end = st.st_size;
    off_t keep = 0;
    char chunk[4096];
    while (end > 0) {
      const off_t begin = end > static_cast<off_t>(sizeof chunk) ? end - sizeof chunk : 0;
      const ssize_t n = ::pread(fd_, chunk, static_cast<size_t>(end - begin), begin);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno(errno, "read", path_);
      }
      if (n != end - begin) throw_errno(EIO, "short read from", path_);
      const void* newline = ::memrchr(chunk, '\n', static_cast<size_t>(n));
      if (newline != nullptr) {
        keep = begin + (static_cast<const char*>(newline) - chunk) + 1;
        break;
      }
      end = begin;
    }
    if (keep < st.st_size) {
      repaired_bytes_ = static_cast<uint64_t>(st.st_size - keep);
      if (::ftruncate(fd_, keep) != 0) throw_errno(errno, "truncate torn line of", path_);
      fsync_fd(fd_, path_);
      log::warn("dropped a torn last line (" + std::to_string(repaired_bytes_) +
                " bytes, left by an interrupted write) from " + path_.string());
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

LineAppender::~LineAppender() {
  if (sync_ == LineSync::kOnSync) ::fdatasync(fd_);  // best effort: a destructor cannot throw
  ::close(fd_);
}

void LineAppender::append(std::string_view line) {
  if (line.find('\n') != std::string_view::npos) {
    throw std::invalid_argument("LineAppender::append to '" + path_.string() +
                                "': the line contains a newline; one record per line expected");
  }
  std::string buffer;
  buffer.reserve(line.size() + 1);
  buffer.append(line);
  buffer.push_back('\n');
  write_all_fd(fd_, buffer.data(), buffer.size(), path_);
  if (sync_ == LineSync::kEveryLine) sync();
}

void LineAppender::sync() {
  if (::fdatasync(fd_) != 0) throw_errno(errno, "fdatasync", path_);
}

void append_line(const std::filesystem::path& path, std::string_view line) {
  LineAppender(path).append(line);
}

std::string read_file(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    throw std::system_error(ec ? ec : std::make_error_code(std::errc::no_such_file_or_directory),
                            "cannot read '" + path.string() + "'");
  }
  if (std::filesystem::is_directory(status)) {
    throw std::system_error(std::make_error_code(std::errc::is_a_directory),
                            "cannot read '" + path.string() + "'");
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            "cannot read '" + path.string() + "' (not a regular file)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::system_error(errno, std::generic_category(), "cannot read '" + path.string() + "'");
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    throw std::system_error(errno, std::generic_category(),
                            "error reading '" + path.string() + "'");
  }
  return text;
}

}  // namespace hypnos::io
