// SHA-256 (FIPS 180-4) of byte buffers and of files, streamed in fixed-size blocks so that a
// multi-gigabyte checkpoint is hashed in constant memory. Checkpoint manifests are built on it.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace hypnos::io {

/// Incremental SHA-256: update() any number of times, then digest() once.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  /// Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 32> digest();
  /// digest() as 64 lowercase hex characters.
  std::string hex_digest();

 private:
  std::array<uint32_t, 8> state_;
  void (*blocks_)(uint32_t* state, const uint8_t* blocks, size_t count);  // portable or SHA-NI
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

/// Lowercase hex SHA-256 of `size` bytes at `data`.
std::string sha256_hex(const void* data, size_t size);
/// Lowercase hex SHA-256 of the file's contents. Note: a std::string argument names a file here;
/// hash a string's bytes with sha256_hex(s.data(), s.size()). Throws std::system_error naming the
/// path.
std::string sha256_hex(const std::filesystem::path& file);

}  // namespace hypnos::io
