// Build identity: the library version and the git commit it was built from (recorded in run
// directories).
#pragma once

namespace hypnos {
inline constexpr const char* kVersion = "0.1.0";
/// `git rev-parse HEAD` at build time, with "-dirty" when tracked files had changes; "unknown"
/// outside git.
extern const char* const kGitCommit;
/// data/ of the source tree this library was built from, and where `cmake --install` puts it.
extern const char* const kSourceDataDir;
extern const char* const kInstalledDataDir;
}  // namespace hypnos
