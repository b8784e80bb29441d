// Logging facade: spdlog lives in one translation unit (src/log/log.cpp) that includes no torch
// header, because spdlog 1.10 does not compile against the fmt 12 headers that LibTorch ships.
#pragma once
#include <string>
#include <string_view>

namespace hypnos::log {

enum class Level { kDebug, kInfo, kWarn, kError };

/// Messages below `level` are dropped. Default: kInfo.
void set_level(Level level);
/// Also append every message to `path` (the run directory's log file). Empty path: stop.
void set_file(const std::string& path);

void debug(std::string_view message);
void info(std::string_view message);
void warn(std::string_view message);
void error(std::string_view message);

/// True when stderr is a terminal: progress lines are redrawn in place there, plain log lines
/// elsewhere.
bool stderr_is_terminal();
/// Redraws one progress line in place on a terminal ("\r...\x1b[K"); a plain info line otherwise.
void progress(std::string_view line);
/// Ends a progress line on a terminal (newline), no-op elsewhere.
void progress_done();

}  // namespace hypnos::log
