// Parsing of one subcommand's arguments (see command_line.h).
#include "command_line.h"

#include <charconv>

namespace hypnos::cli {

std::string command_of(const CommandSpec& spec) {
  return spec.name.empty() ? spec.program : spec.program + " " + spec.name;
}

long long ParsedArgs::get_int(const std::string& flag, long long fallback) const {
  auto it = flags.find(flag);
  if (it == flags.end()) return fallback;
  long long x = 0;
  const std::string& s = it->second;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) {
    throw UsageError(flag + " expects an integer, got '" + s + "'");
  }
  return x;
}

ParsedArgs parse_args(const CommandSpec& spec, int argc, char** argv, int first) {
  ParsedArgs out;
  for (int i = 0; i < argc; ++i) out.command_line += (i ? " " : "") + std::string(argv[i]);
  for (int i = first; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      out.help = true;
      continue;
    }
    if (arg.rfind("-", 0) == 0 && arg.size() > 1) {
      std::string name = arg, value;
      const auto eq = arg.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) name = arg.substr(0, eq), value = arg.substr(eq + 1);
      const FlagSpec* flag = nullptr;
      for (const auto& f : spec.flags) {
        if (f.name == name) flag = &f;
      }
      if (!flag) throw UsageError("unknown option '" + name + "' for '" + command_of(spec) + "'");
      if (flag->value_name.empty()) {
        if (inline_value) throw UsageError(name + " takes no value");
      } else if (!inline_value) {
        if (i + 1 >= argc) throw UsageError(name + " needs a value (" + flag->value_name + ")");
        value = argv[++i];
      }
      out.flags[name] = value;
      continue;
    }
    if (arg.find('=') != std::string::npos && out.positionals.size() >= spec.positionals.size()) {
      if (!spec.takes_overrides) {
        throw UsageError("'" + command_of(spec) + "' takes no key.path=value overrides: '" + arg +
                         "'");
      }
      out.overrides.push_back(arg);
      continue;
    }
    if (out.positionals.size() >= spec.positionals.size()) {
      throw UsageError("unexpected argument '" + arg + "' for '" + command_of(spec) + "'");
    }
    out.positionals.push_back(arg);
  }
  if (!out.help && out.positionals.size() < spec.positionals.size()) {
    throw UsageError("'" + command_of(spec) + "' needs " +
                     spec.positionals[out.positionals.size()]);
  }
  return out;
}

std::string usage(const CommandSpec& spec) {
  std::string s = "usage: " + command_of(spec);
  for (const auto& p : spec.positionals) s += " " + p;
  if (spec.takes_overrides) s += " [key.path=value ...]";
  for (const auto& f : spec.flags) {
    s += " [" + f.name + (f.value_name.empty() ? "" : " " + f.value_name) + "]";
  }
  s += "\n\n" + spec.summary + "\n";
  if (!spec.flags.empty()) {
    s += "\noptions:\n";
    for (const auto& f : spec.flags) {
      std::string left = "  " + f.name + (f.value_name.empty() ? "" : " " + f.value_name);
      left.resize(std::max<size_t>(left.size() + 2, 22), ' ');
      s += left + f.help + "\n";
    }
    std::string help = "  --help, -h";
    help.resize(22, ' ');
    s += help + "this text\n";
  }
  if (!spec.details.empty()) s += "\n" + spec.details + "\n";
  return s;
}

}  // namespace hypnos::cli
