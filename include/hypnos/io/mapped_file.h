// A whole file mapped read-only into memory (POSIX mmap): token files of many gigabytes are read
// in place, the pages shared between processes through the page cache, without a copy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace hypnos::io {

class MappedFile {
 public:
  /// Maps `path` read-only. Throws std::runtime_error naming the path when it cannot be opened,
  /// is not a regular file, or cannot be mapped. An empty file maps to size() = 0, data() =
  /// nullptr.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void unmap();

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace hypnos::io
