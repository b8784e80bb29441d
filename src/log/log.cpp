// The only translation unit that sees spdlog (and Debian's fmt 9): no torch header may be included
// here.
#include "hypnos/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>

namespace hypnos::log {
namespace {

struct Logger {
  std::mutex mutex;
  std::shared_ptr<spdlog::logger> logger;
  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> file;
  bool progress_open = false;

  Logger() {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    logger = std::make_shared<spdlog::logger>("hypnos", console);
    logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::info);
  }
};

Logger& instance() {
  static Logger logger;  // the facade's one static: the process has one stderr
  return logger;
}

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

void write(Level level, std::string_view message) {
  Logger& l = instance();
  std::lock_guard<std::mutex> lock(l.mutex);
  if (l.progress_open) {  // a log line must not be glued to a half-drawn progress line
    std::fputs("\n", stderr);
    l.progress_open = false;
  }
  l.logger->log(to_spdlog(level), "{}", message);
}

}  // namespace

void set_level(Level level) {
  Logger& l = instance();
  std::lock_guard<std::mutex> lock(l.mutex);
  l.logger->set_level(to_spdlog(level));
}

void set_file(const std::string& path) {
  Logger& l = instance();
  std::lock_guard<std::mutex> lock(l.mutex);
  auto& sinks = l.logger->sinks();
  if (l.file) {
    sinks.erase(std::remove(sinks.begin(), sinks.end(), l.file), sinks.end());
    l.file.reset();
  }
  if (!path.empty()) {
    l.file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
    sinks.push_back(l.file);
  }
}

void debug(std::string_view message) {
  write(Level::kDebug, message);
}
void info(std::string_view message) {
  write(Level::kInfo, message);
}
void warn(std::string_view message) {
  write(Level::kWarn, message);
}
void error(std::string_view message) {
  write(Level::kError, message);
}

bool stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

void progress(std::string_view line) {
  if (!stderr_is_terminal()) {
    info(line);
    return;
  }
  Logger& l = instance();
  std::lock_guard<std::mutex> lock(l.mutex);
  std::fprintf(stderr, "\r%.*s\x1b[K", static_cast<int>(line.size()), line.data());
  std::fflush(stderr);
  l.progress_open = true;
}

void progress_done() {
  Logger& l = instance();
  std::lock_guard<std::mutex> lock(l.mutex);
  if (l.progress_open) {
    std::fputs("\n", stderr);
    l.progress_open = false;
  }
}

}  // namespace hypnos::log
