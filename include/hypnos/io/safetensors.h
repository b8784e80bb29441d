// The safetensors format (huggingface/safetensors): 8-byte little-endian header length N, N bytes
// of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}
// padded with spaces to a multiple of 8, then the tensors' bytes back to back. Checkpoints and
// exported weights use it because Python reads it with nothing but struct, json and numpy.
//
// The reader treats every file as hostile (docs/reliability.md R13): each length, offset, shape and
// dtype is checked before any byte is copied, and a malformed file gives an exception naming the
// file and the tensor, never undefined behaviour.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hypnos::io {

/// Named tensors in file order.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;
/// The free-form `__metadata__` object: string keys to string values.
using TensorMetadata = std::map<std::string, std::string>;

/// Dtypes read and written: F32, F64, BF16, F16, I64, I32, U8, BOOL.
bool safetensors_supports(at::ScalarType dtype);
/// The safetensors name of a supported dtype ("F32", ...); throws std::invalid_argument otherwise.
std::string_view safetensors_dtype_name(at::ScalarType dtype);

/// Headers longer than this are refused as malformed (the reference implementation uses 100 MB).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

/// The bytes of a safetensors file holding `tensors` in the given order (any device, any strides:
/// they are copied to contiguous CPU memory). Names must be unique, non-empty and not
/// "__metadata__"; dtypes must be supported. Throws std::invalid_argument naming the tensor.
std::string safetensors_bytes(const NamedTensors& tensors, const TensorMetadata& metadata = {});

/// Writes `tensors` to `path` atomically (io::write_file_atomic), streaming one tensor at a time.
void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const TensorMetadata& metadata = {});
/// The same for a map: tensors are stored in name order.
void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const TensorMetadata& metadata = {});

/// What a safetensors file holds: CPU tensors in file (data offset) order, and the metadata.
struct SafetensorsContents {
  NamedTensors tensors;
  TensorMetadata metadata;

  /// The tensor called `name`; throws std::out_of_range naming it when absent.
  const at::Tensor& at(std::string_view name) const;
  std::map<std::string, at::Tensor> as_map() const;
};

/// Reads and validates a whole file. Throws std::runtime_error whose message names the file (and
/// the tensor when one is at fault) for a malformed file; std::system_error when it cannot be read.
SafetensorsContents load_safetensors(const std::filesystem::path& path);
/// The same for a file already in memory; `source` names it in error messages.
SafetensorsContents parse_safetensors(std::string_view bytes, std::string_view source = "<memory>");

/// Checks, before any tensor is used, that `contents` holds exactly what a loader expects: every
/// name of `expected` with the same dtype and shape (stored F32 bytes labelled I32 are an error,
/// never cast), and no other tensor unless `allowed_extra` lists it (an import may declare the
/// extras it ignores). Throws std::runtime_error naming `source` and the tensor at fault.
void check_tensors_match(const SafetensorsContents& contents, const NamedTensors& expected,
                         std::string_view source,
                         const std::vector<std::string>& allowed_extra = {});

/// "name (k of n values)" for every floating-point tensor holding NaN or Inf, in order: loaded
/// weights are reported when they are not finite.
std::vector<std::string> nonfinite_tensors(const NamedTensors& tensors);

/// One tensor as the header describes it, without its data.
struct SafetensorsEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  ///< offset of the first byte, counted from the end of the header
  uint64_t end = 0;
};
/// Reads and validates only the header (cheap for multi-gigabyte files): entries in file order.
std::vector<SafetensorsEntry> read_safetensors_header(const std::filesystem::path& path,
                                                      TensorMetadata* metadata = nullptr);

}  // namespace hypnos::io
