// Checkpoint manifests: manifest.json lists every file of a directory with its size and SHA-256 and
// is written last, so a directory with a valid manifest is complete, and a flipped byte or a
// truncated file is caught before anything is deserialised (docs/reliability.md R7).
//
// The manifest checksums itself too (files_sha256 over its own file list), so a corrupted manifest
// reads as "checksum mismatch: .../manifest.json" instead of blaming an intact file.
//
//   io::StagedDirectory staged(run_dir / "checkpoints" / "step_00000030");
//   io::save_safetensors(staged.path() / "model.safetensors", weights, metadata);
//   ...every other file...
//   io::write_manifest(staged.path());   // last
//   staged.commit();                      // the step directory appears complete, or not at all
//   ...
//   io::verify_manifest(step_dir);        // on resume, before loading anything; IntegrityError:
//                                         // log it and fall back to the previous checkpoint
#pragma once
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace hypnos::io {

inline constexpr std::string_view kManifestName = "manifest.json";

/// A directory that does not match its manifest. what() is exactly "checksum mismatch: <file>" or
/// "missing file: <file>", <file> being the full path of the first file at fault.
class IntegrityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Hashes every regular file below `dir` (recursively; not manifest.json itself nor `*.tmp-<pid>`
/// temporaries) and writes `dir`/manifest.json atomically. Call it after every other file is
/// complete. Returns the number of files listed.
size_t write_manifest(const std::filesystem::path& dir);

/// The first problem with `dir`, in the words of IntegrityError, or nullopt when every listed file
/// is present with its recorded size and hash. Sizes and presence are checked for all files before
/// any is hashed. Files not in the manifest are ignored.
std::optional<std::string> find_manifest_problem(const std::filesystem::path& dir);

/// find_manifest_problem, throwing IntegrityError with the message when there is one.
void verify_manifest(const std::filesystem::path& dir);

}  // namespace hypnos::io
