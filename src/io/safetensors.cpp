// safetensors reader and writer. The reader validates the whole header (lengths, dtypes, shapes,
// offsets, exact coverage of the data section) before it allocates or copies anything, so every
// malformed input ends in one exception that names the file and the tensor.
#include "hypnos/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <system_error>

#include "hypnos/io/durable.h"

namespace hypnos::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; a big-endian host would need byte swaps");

struct DtypeInfo {
  std::string_view name;
  at::ScalarType type;
  uint64_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", at::kFloat, 4}, {"F64", at::kDouble, 8}, {"BF16", at::kBFloat16, 2},
    {"F16", at::kHalf, 2},  {"I64", at::kLong, 8},   {"I32", at::kInt, 4},
    {"U8", at::kByte, 1},   {"BOOL", at::kBool, 1},
};
// Valid in the format but not read here; named so the error can say "unsupported", not "unknown".
constexpr std::string_view kOtherFormatDtypes[] = {"I8",      "I16",     "U16",     "U32",
                                                   "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                                   "F6_E2M3", "F6_E3M2", "F4",      "C64"};
constexpr size_t kMaxRank = 1024;

const DtypeInfo* find_dtype(at::ScalarType type) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.type == type) return &info;
  }
  return nullptr;
}

const DtypeInfo* find_dtype(std::string_view name) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

std::string in_quotes(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

// ---- writing ----------------------------------------------------------------------------------

/// The 8-byte length prefix plus the space-padded JSON header for `tensors`.
std::string encode_header(const NamedTensors& tensors, const TensorMetadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string where = "save_safetensors: tensor " + in_quotes(name);
    if (name.empty() || name == "__metadata__") {
      throw std::invalid_argument(where + ": names must be non-empty and not '__metadata__'");
    }
    if (!seen.insert(name).second) throw std::invalid_argument(where + ": duplicate name");
    if (!tensor.defined()) throw std::invalid_argument(where + ": undefined tensor");
    if (tensor.layout() != at::kStrided) {
      throw std::invalid_argument(where + ": only dense (strided) tensors can be stored");
    }
    const DtypeInfo* dtype = find_dtype(tensor.scalar_type());
    if (dtype == nullptr) {
      throw std::invalid_argument(where + ": dtype " +
                                  std::string(c10::toString(tensor.scalar_type())) +
                                  " is not one of F32, F64, BF16, F16, I64, I32, U8, BOOL");
    }
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * dtype->size;
    nlohmann::ordered_json entry;
    entry["dtype"] = dtype->name;
    entry["shape"] = tensor.sizes().vec();
    entry["data_offsets"] = {offset, offset + bytes};
    header[name] = std::move(entry);
    offset += bytes;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("save_safetensors: names and metadata must be valid "
                                            "UTF-8: ") +
                                e.what());
  }
  if (json.size() > kSafetensorsMaxHeaderBytes - 8) {
    throw std::invalid_argument("save_safetensors: the header of " + std::to_string(json.size()) +
                                " bytes exceeds the format's limit (too many tensors?)");
  }
  // Pad so that the data section starts 8-byte aligned (the reference writer does the same).
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t length = json.size();
  std::memcpy(out.data(), &length, 8);
  return out + json;
}

template <class Sink>
void write_tensor_data(const NamedTensors& tensors, Sink&& sink) {
  for (const auto& [name, tensor] : tensors) {
    // One tensor at a time, so at most one extra CPU copy is alive while streaming from a GPU.
    // resolve_neg/resolve_conj: a lazily negated view must be written with its visible values.
    const at::Tensor cpu = tensor.detach().to(at::kCPU).resolve_conj().resolve_neg().contiguous();
    if (cpu.nbytes() > 0) sink(cpu.data_ptr(), cpu.nbytes());
  }
}

// ---- reading ----------------------------------------------------------------------------------

[[noreturn]] void malformed(std::string_view source, const std::string& detail) {
  throw std::runtime_error(std::string(source) + ": malformed safetensors file: " + detail);
}

/// Checks the 8-byte prefix against the file size; returns the header length.
uint64_t check_header_length(const unsigned char* prefix, uint64_t file_size,
                             std::string_view source) {
  if (file_size < 8) {
    malformed(source, "the file has " + std::to_string(file_size) +
                          " bytes, fewer than the 8-byte header length");
  }
  uint64_t length;
  std::memcpy(&length, prefix, 8);
  if (length > kSafetensorsMaxHeaderBytes) {
    malformed(source, "header length " + std::to_string(length) + " exceeds the limit of " +
                          std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  }
  if (length > file_size - 8) {
    malformed(source, "header length " + std::to_string(length) + " runs past the end of the " +
                          std::to_string(file_size) + "-byte file");
  }
  if (length < 2) malformed(source, "header length " + std::to_string(length) + " is too short");
  return length;
}

uint64_t checked_index(const nlohmann::json& value, std::string_view source,
                       const std::string& where, std::string_view what) {
  if (!value.is_number_unsigned()) {
    malformed(source, where + ": " + std::string(what) + " must be a non-negative integer, got " +
                          value.dump());
  }
  return value.get<uint64_t>();
}

struct ParsedHeader {
  std::vector<SafetensorsEntry> entries;  // in data offset order
  TensorMetadata metadata;
};

// The header as JSON, refusing what nlohmann would accept silently: duplicate keys (it keeps the
// last) and nesting deeper than any valid header (a hostile "[[[[..." would build a huge DOM).
nlohmann::json parse_header_json(std::string_view json_text, std::string_view source) {
  if (json_text.front() != '{') malformed(source, "the header does not start with '{'");
  std::set<std::string> names;
  std::set<std::string> entry_keys;
  std::string current_name, duplicate;
  bool too_deep = false;
  const nlohmann::json::parser_callback_t watch_keys =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        // Nothing valid nests deeper than a shape's entries (depth 3).
        if (depth > 3) {
          too_deep = true;
          return false;
        }
        if (event == nlohmann::json::parse_event_t::key && duplicate.empty()) {
          const std::string& key = parsed.get_ref<const std::string&>();
          if (depth == 1) {
            current_name = key;
            entry_keys.clear();
            if (!names.insert(key).second) duplicate = "duplicate tensor name " + in_quotes(key);
          } else if (depth == 2 && !entry_keys.insert(key).second) {
            duplicate = (current_name == "__metadata__" ? current_name
                                                        : "tensor " + in_quotes(current_name)) +
                        ": duplicate key " + in_quotes(key);
          }
        }
        return true;
      };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json_text.begin(), json_text.end(), watch_keys);
  } catch (const nlohmann::json::exception& e) {
    malformed(source, std::string("the header is not JSON (") + e.what() + ")");
  }
  if (!duplicate.empty()) malformed(source, duplicate);
  if (too_deep) malformed(source, "the header nests deeper than a safetensors header can");
  if (!header.is_object()) malformed(source, "the header is not a JSON object");
  return header;
}

TensorMetadata parse_metadata(const nlohmann::json& value, std::string_view source) {
  if (!value.is_object()) malformed(source, "__metadata__ is not an object");
  TensorMetadata metadata;
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string()) {
      malformed(source, "__metadata__ value of " + in_quotes(key) + " is not a string");
    }
    metadata[key] = text.get<std::string>();
  }
  return metadata;
}

// One tensor's entry: exactly dtype, shape and data_offsets, the offsets inside the data section
// and holding exactly the bytes the dtype and shape need.
SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& value,
                             uint64_t data_size, std::string_view source) {
  const std::string where = "tensor " + in_quotes(name);
  if (!value.is_object()) malformed(source, where + ": the entry is not an object");
  for (const auto& [key, unused] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      malformed(source, where + ": unexpected key " + in_quotes(key));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) malformed(source, where + ": missing " + in_quotes(key));
  }
  SafetensorsEntry entry;
  entry.name = name;

  const nlohmann::json& dtype_json = value.at("dtype");
  if (!dtype_json.is_string()) malformed(source, where + ": dtype is not a string");
  const std::string& dtype_name = dtype_json.get_ref<const std::string&>();
  const DtypeInfo* dtype = find_dtype(dtype_name);
  if (dtype == nullptr) {
    const bool known = std::find(std::begin(kOtherFormatDtypes), std::end(kOtherFormatDtypes),
                                 dtype_name) != std::end(kOtherFormatDtypes);
    malformed(source, where + (known ? ": unsupported dtype " : ": unknown dtype ") +
                          in_quotes(dtype_name) + " (F32, F64, BF16, F16, I64, I32, U8, BOOL)");
  }
  entry.dtype = dtype->type;

  const nlohmann::json& shape = value.at("shape");
  if (!shape.is_array()) malformed(source, where + ": shape is not an array");
  if (shape.size() > kMaxRank) {
    malformed(source, where + ": shape has " + std::to_string(shape.size()) +
                          " dimensions, more than " + std::to_string(kMaxRank));
  }
  // ATen computes contiguous strides as products of max(size, 1): those must fit in int64 too,
  // even when a zero dimension makes the element count 0.
  uint64_t span = 1;
  bool has_zero = false;
  for (const nlohmann::json& dim : shape) {
    const uint64_t size = checked_index(dim, source, where, "every shape entry");
    has_zero |= size == 0;
    if (__builtin_mul_overflow(span, std::max<uint64_t>(size, 1), &span) ||
        span > static_cast<uint64_t>(INT64_MAX)) {
      malformed(source, where + ": shape " + shape.dump() + " has too many elements");
    }
    entry.shape.push_back(static_cast<int64_t>(size));
  }
  const uint64_t numel = has_zero ? 0 : span;
  uint64_t bytes;
  if (__builtin_mul_overflow(numel, dtype->size, &bytes)) {
    malformed(source, where + ": shape " + shape.dump() + " is too large in bytes");
  }

  const nlohmann::json& offsets = value.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2) {
    malformed(source, where + ": data_offsets must be [begin, end], got " + offsets.dump());
  }
  entry.begin = checked_index(offsets[0], source, where, "data_offsets begin");
  entry.end = checked_index(offsets[1], source, where, "data_offsets end");
  if (entry.begin > entry.end || entry.end > data_size) {
    malformed(source, where + ": data_offsets " + offsets.dump() +
                          " out of range for a data section of " + std::to_string(data_size) +
                          " bytes");
  }
  if (entry.end - entry.begin != bytes) {
    malformed(source, where + ": data_offsets " + offsets.dump() + " hold " +
                          std::to_string(entry.end - entry.begin) + " bytes but " +
                          std::string(dtype->name) + " " + shape.dump() + " needs " +
                          std::to_string(bytes));
  }
  return entry;
}

// The tensors must tile the data section exactly: no overlap, no gap, nothing after the last.
// Sorts the entries by their offsets.
void check_tiling(std::vector<SafetensorsEntry>& entries, uint64_t data_size,
                  std::string_view source) {
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& entry : entries) {
    if (entry.begin < covered) {
      malformed(source, "tensor " + in_quotes(entry.name) + " overlaps tensor " +
                            in_quotes(previous->name) + " (bytes " + std::to_string(entry.begin) +
                            " to " + std::to_string(covered) + ")");
    }
    if (entry.begin > covered) {
      malformed(source, "tensor " + in_quotes(entry.name) + " starts at byte " +
                            std::to_string(entry.begin) + ", leaving a gap after byte " +
                            std::to_string(covered));
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered != data_size) {
    malformed(source, "the tensors cover " + std::to_string(covered) +
                          " bytes of a data section of " + std::to_string(data_size) + " bytes");
  }
}

ParsedHeader parse_header(std::string_view json_text, uint64_t data_size, std::string_view source) {
  const nlohmann::json header = parse_header_json(json_text, source);
  ParsedHeader out;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      out.metadata = parse_metadata(value, source);
    } else {
      out.entries.push_back(parse_entry(name, value, data_size, source));
    }
  }
  check_tiling(out.entries, data_size, source);
  return out;
}

/// Allocates the tensor of `entry` and lets `fill` copy its bytes in, then checks BOOL bytes
/// (any value but 0 or 1 in a bool tensor is undefined behaviour in ATen).
template <class Fill>
at::Tensor materialise(const SafetensorsEntry& entry, std::string_view source, Fill&& fill) {
  at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(entry.dtype));
  const uint64_t bytes = entry.end - entry.begin;
  if (bytes == 0) return tensor;
  fill(tensor.data_ptr(), entry.begin, bytes);
  if (entry.dtype == at::kBool) {
    const auto* raw = static_cast<const unsigned char*>(tensor.data_ptr());
    for (uint64_t i = 0; i < bytes; ++i) {
      if (raw[i] > 1) {
        malformed(source, "tensor " + in_quotes(entry.name) + ": BOOL element " +
                              std::to_string(i) + " has byte value " + std::to_string(raw[i]) +
                              " (0 or 1 expected)");
      }
    }
  }
  return tensor;
}

/// An open file, closed on scope exit; pread_exact throws on errors and short reads.
class InputFile {
 public:
  explicit InputFile(const std::filesystem::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      throw std::system_error(errno, std::generic_category(), "open '" + path.string() + "'");
    }
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const {
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
      throw std::system_error(errno, std::generic_category(), "fstat '" + path_.string() + "'");
    }
    if (!S_ISREG(st.st_mode)) {
      throw std::runtime_error(path_.string() + ": not a regular file");
    }
    return static_cast<uint64_t>(st.st_size);
  }

  void pread_exact(void* out, uint64_t size, uint64_t offset) const {
    auto* bytes = static_cast<char*>(out);
    while (size > 0) {
      const ssize_t n =
          ::pread(fd_, bytes, std::min<uint64_t>(size, 1u << 30), static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        throw std::system_error(errno, std::generic_category(), "read '" + path_.string() + "'");
      }
      if (n == 0) throw std::runtime_error(path_.string() + ": the file shrank while being read");
      bytes += n;
      size -= static_cast<uint64_t>(n);
      offset += static_cast<uint64_t>(n);
    }
  }

 private:
  std::filesystem::path path_;
  int fd_;
};

struct FileHeader {
  ParsedHeader parsed;
  uint64_t data_start = 0;
};

FileHeader read_file_header(const InputFile& file, std::string_view source) {
  const uint64_t file_size = file.size();
  unsigned char prefix[8] = {};
  if (file_size >= 8) file.pread_exact(prefix, 8, 0);
  const uint64_t length = check_header_length(prefix, file_size, source);
  std::string json(length, '\0');
  file.pread_exact(json.data(), length, 8);
  FileHeader out;
  out.data_start = 8 + length;
  out.parsed = parse_header(json, file_size - out.data_start, source);
  return out;
}

}  // namespace

bool safetensors_supports(at::ScalarType dtype) {
  return find_dtype(dtype) != nullptr;
}

std::string_view safetensors_dtype_name(at::ScalarType dtype) {
  const DtypeInfo* info = find_dtype(dtype);
  if (info == nullptr) {
    throw std::invalid_argument("safetensors_dtype_name: dtype " +
                                std::string(c10::toString(dtype)) + " is not supported");
  }
  return info->name;
}

std::string safetensors_bytes(const NamedTensors& tensors, const TensorMetadata& metadata) {
  std::string out = encode_header(tensors, metadata);
  write_tensor_data(tensors, [&](const void* data, size_t size) {
    out.append(static_cast<const char*>(data), size);
  });
  return out;
}

void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const TensorMetadata& metadata) {
  const std::string header = encode_header(tensors, metadata);  // validates before any file exists
  write_file_atomic(path, [&](FileWriter& out) {
    out.write(header);
    write_tensor_data(tensors, [&](const void* data, size_t size) { out.write(data, size); });
  });
}

void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const TensorMetadata& metadata) {
  save_safetensors(path, NamedTensors(tensors.begin(), tensors.end()), metadata);
}

const at::Tensor& SafetensorsContents::at(std::string_view name) const {
  for (const auto& [key, tensor] : tensors) {
    if (key == name) return tensor;
  }
  throw std::out_of_range("safetensors: no tensor named " + in_quotes(name));
}

std::map<std::string, at::Tensor> SafetensorsContents::as_map() const {
  return {tensors.begin(), tensors.end()};
}

SafetensorsContents parse_safetensors(std::string_view bytes, std::string_view source) {
  const uint64_t length = check_header_length(reinterpret_cast<const unsigned char*>(bytes.data()),
                                              bytes.size(), source);
  const std::string_view data = bytes.substr(8 + length);
  ParsedHeader header = parse_header(bytes.substr(8, length), data.size(), source);
  SafetensorsContents out;
  out.metadata = std::move(header.metadata);
  for (const SafetensorsEntry& entry : header.entries) {
    out.tensors.emplace_back(
        entry.name, materialise(entry, source, [&](void* dst, uint64_t offset, uint64_t size) {
          std::memcpy(dst, data.data() + offset, size);
        }));
  }
  return out;
}

SafetensorsContents load_safetensors(const std::filesystem::path& path) {
  const std::string source = path.string();
  InputFile file(path);
  FileHeader header = read_file_header(file, source);
  SafetensorsContents out;
  out.metadata = std::move(header.parsed.metadata);
  for (const SafetensorsEntry& entry : header.parsed.entries) {
    out.tensors.emplace_back(
        entry.name, materialise(entry, source, [&](void* dst, uint64_t offset, uint64_t size) {
          file.pread_exact(dst, size, header.data_start + offset);
        }));
  }
  return out;
}

void check_tensors_match(const SafetensorsContents& contents, const NamedTensors& expected,
                         std::string_view source, const std::vector<std::string>& allowed_extra) {
  const std::string where(source);
  std::map<std::string_view, const at::Tensor*> stored;
  for (const auto& [name, tensor] : contents.tensors) stored.emplace(name, &tensor);
  auto dtype_name = [](at::ScalarType t) {
    return safetensors_supports(t) ? std::string(safetensors_dtype_name(t))
                                   : std::string(c10::toString(t));
  };
  for (const auto& [name, target] : expected) {
    const auto it = stored.find(name);
    if (it == stored.end()) throw std::runtime_error(where + ": no tensor " + in_quotes(name));
    const at::Tensor& t = *it->second;
    if (t.scalar_type() != target.scalar_type()) {
      throw std::runtime_error(where + ": tensor " + in_quotes(name) + " is stored as " +
                               dtype_name(t.scalar_type()) + ", the model's is " +
                               dtype_name(target.scalar_type()) + " (never cast on load)");
    }
    if (t.sizes() != target.sizes()) {
      throw std::runtime_error(where + ": tensor " + in_quotes(name) + " has shape " +
                               c10::str(t.sizes()) + ", the model expects " +
                               c10::str(target.sizes()));
    }
  }
  std::set<std::string_view> wanted;
  for (const auto& [name, target] : expected) wanted.insert(name);
  for (const auto& name : allowed_extra) wanted.insert(name);
  for (const auto& [name, tensor] : contents.tensors) {
    if (!wanted.count(name)) {
      throw std::runtime_error(where + ": unexpected tensor " + in_quotes(name) +
                               " (the model has no such parameter or buffer)");
    }
  }
}

std::vector<std::string> nonfinite_tensors(const NamedTensors& tensors) {
  std::vector<std::string> out;
  for (const auto& [name, tensor] : tensors) {
    if (!at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) continue;
    const int64_t bad = (~at::isfinite(tensor)).sum().item<int64_t>();
    if (bad > 0) {
      out.push_back(name + " (" + std::to_string(bad) + " of " + std::to_string(tensor.numel()) +
                    " values)");
    }
  }
  return out;
}

std::vector<SafetensorsEntry> read_safetensors_header(const std::filesystem::path& path,
                                                      TensorMetadata* metadata) {
  InputFile file(path);
  FileHeader header = read_file_header(file, path.string());
  if (metadata != nullptr) *metadata = std::move(header.parsed.metadata);
  return std::move(header.parsed.entries);
}

}  // namespace hypnos::io
