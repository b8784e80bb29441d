// manifest.json writer and verifier. Anything about a manifest that does not parse as we wrote it
// (bad JSON, wrong types, a path leaving the directory, a wrong self-checksum) is reported as a
// checksum mismatch of manifest.json: it was corrupted after being written.
#include "hypnos/io/manifest.h"

#include <sys/stat.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <system_error>

#include "hypnos/io/durable.h"
#include "hypnos/io/sha256.h"

namespace hypnos::io {
namespace {

constexpr std::string_view kFormat = "hypnos-manifest/1";

bool is_hex_digest(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

/// A relative path that stays inside the directory: no root, no "..", no empty or "." parts.
bool is_inside_relative_path(const std::string& s) {
  if (s.empty() || s.front() == '/') return false;
  size_t begin = 0;
  while (begin <= s.size()) {
    size_t end = s.find('/', begin);
    if (end == std::string::npos) end = s.size();
    const std::string_view part(s.data() + begin, end - begin);
    if (part.empty() || part == "." || part == "..") return false;
    begin = end + 1;
  }
  return true;
}

std::string mismatch(const std::filesystem::path& file) {
  return "checksum mismatch: " + file.string();
}

}  // namespace

size_t write_manifest(const std::filesystem::path& dir) {
  std::vector<std::string> relative;
  for (auto it = std::filesystem::recursive_directory_iterator(dir);
       it != std::filesystem::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (is_temporary_name(name)) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file() || it->is_symlink()) continue;
    std::string rel = it->path().lexically_relative(dir).generic_string();
    if (rel == kManifestName) continue;
    relative.push_back(std::move(rel));
  }
  std::sort(relative.begin(), relative.end());
  nlohmann::json files = nlohmann::json::array();
  for (const std::string& rel : relative) {
    const std::filesystem::path file = dir / rel;
    files.push_back({{"path", rel},
                     {"size", static_cast<uint64_t>(std::filesystem::file_size(file))},
                     {"sha256", sha256_hex(file)}});
  }
  const std::string files_text = files.dump();
  const nlohmann::json manifest = {
      {"format", kFormat},
      {"files", files},
      {"files_sha256", sha256_hex(files_text.data(), files_text.size())}};
  write_file_atomic(dir / kManifestName, manifest.dump(2) + "\n");
  return relative.size();
}

std::optional<std::string> find_manifest_problem(const std::filesystem::path& dir) {
  const std::filesystem::path manifest_path = dir / kManifestName;
  struct stat st;
  if (::stat(manifest_path.c_str(), &st) != 0) {
    if (errno == ENOENT) return "missing file: " + manifest_path.string();
    throw std::system_error(errno, std::generic_category(),
                            "stat '" + manifest_path.string() + "'");
  }
  const std::string text = read_file(manifest_path);  // an I/O error is not a checksum mismatch
  const nlohmann::json manifest = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!manifest.is_object() || !manifest.contains("format") ||
      manifest["format"] != std::string(kFormat) || !manifest.contains("files") ||
      !manifest["files"].is_array() || !manifest.contains("files_sha256") ||
      !manifest["files_sha256"].is_string()) {
    return mismatch(manifest_path);
  }
  const nlohmann::json& files = manifest["files"];
  const std::string files_text = files.dump();
  if (sha256_hex(files_text.data(), files_text.size()) !=
      manifest["files_sha256"].get<std::string>()) {
    return mismatch(manifest_path);
  }
  struct Listed {
    std::filesystem::path path;
    uint64_t size;
    std::string sha256;
  };
  std::vector<Listed> listed;
  for (const nlohmann::json& entry : files) {
    if (!entry.is_object() || !entry.contains("path") || !entry["path"].is_string() ||
        !entry.contains("size") || !entry["size"].is_number_unsigned() ||
        !entry.contains("sha256") || !entry["sha256"].is_string() ||
        !is_inside_relative_path(entry["path"].get<std::string>()) ||
        !is_hex_digest(entry["sha256"].get<std::string>())) {
      return mismatch(manifest_path);
    }
    listed.push_back({dir / entry["path"].get<std::string>(), entry["size"].get<uint64_t>(),
                      entry["sha256"].get<std::string>()});
  }
  // Cheap checks for every file first: a missing or truncated file is found without hashing.
  for (const Listed& file : listed) {
    if (::stat(file.path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return "missing file: " + file.path.string();
      throw std::system_error(errno, std::generic_category(), "stat '" + file.path.string() + "'");
    }
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != file.size) {
      return mismatch(file.path);
    }
  }
  for (const Listed& file : listed) {
    if (sha256_hex(file.path) != file.sha256) return mismatch(file.path);
  }
  return std::nullopt;
}

void verify_manifest(const std::filesystem::path& dir) {
  if (auto problem = find_manifest_problem(dir)) throw IntegrityError(*problem);
}

}  // namespace hypnos::io
