// The config machinery on a small test schema: typed reads, ranges, enums, overrides, unknown and
// duplicate keys with file:line and suggestions (docs/reliability.md R1), and the byte-exact round
// trip (R2).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"

namespace hypnos::config {

enum class Mode { kThread, kRestart };
template <>
struct EnumNames<Mode> {
  static constexpr std::array<std::string_view, 2> names{"thread", "restart"};
};

namespace {

struct SleepPart {
  int64_t n_passes = 1;
  Mode mode = Mode::kThread;
  std::vector<int64_t> loop_layers;
  template <class V>
  void visit(V& v) {
    v.field("n_passes", n_passes, "passes", Range{1, 64});
    v.field("mode", mode, "state between passes");
    v.field("loop_layers", loop_layers, "[a, b)", Range{0, 1000});
  }
};
struct TrainPart {
  double lr = 2e-3;
  bool flag = false;
  std::string name = "run";
  template <class V>
  void visit(V& v) {
    v.field("lr", lr, "learning rate", Range{0, 1});
    v.field("flag", flag, "a switch");
    v.field("name", name, "a name");
  }
};
struct Root {
  SleepPart sleep;
  TrainPart train;
  template <class V>
  void visit(V& v) {
    v.section("sleep", sleep);
    v.section("train", train);
  }
};

std::string write_temp(const std::string& name, const std::string& text) {
  // The pid keeps tests that ctest runs in parallel processes off each other's files.
  const auto path = std::filesystem::temp_directory_path() /
                    ("hypnos_config_" + name + "_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << text;
  return path.string();
}

std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    load<Root>(write_temp("err", text), overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ConfigDocument, ADirectoryOrMissingFileIsAnErrorNotAnEmptyConfig) {
  auto message = [](const std::string& path) {
    try {
      load<Root>(path, {});
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string e = message(dir);
  EXPECT_NE(e.find("cannot read '" + dir + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("directory"), std::string::npos) << e;
  const std::string missing = dir + "/hypnos_no_such_config.yaml";
  EXPECT_NE(message(missing).find("cannot read '" + missing + "'"), std::string::npos);
}

TEST(ConfigDocument, AKeyWithoutAValueSaysSo) {
  const std::string e = error_of("sleep:\n  n_passes:\n");
  EXPECT_NE(e.find("sleep.n_passes: expected an integer, got no value"), std::string::npos) << e;
}

TEST(ConfigDocument, ReadsTypedValuesAndOverridesWin) {
  const auto path = write_temp("ok",
                               "sleep:\n  n_passes: 3\n  mode: restart\n  loop_layers: [1, 3]\n"
                               "train:\n  lr: 1.0e-3\n  flag: true\n");
  Root r = load<Root>(path, {"sleep.n_passes=4", "train.name=abc"});
  EXPECT_EQ(r.sleep.n_passes, 4);
  EXPECT_EQ(r.sleep.mode, Mode::kRestart);
  EXPECT_EQ(r.sleep.loop_layers, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(r.train.lr, 1e-3);
  EXPECT_TRUE(r.train.flag);
  EXPECT_EQ(r.train.name, "abc");
}

TEST(ConfigDocument, UnknownYamlKeyNamesPathLineAndNearestKey) {
  const std::string e = error_of("sleep:\n  n_pases: 2\n");
  EXPECT_NE(e.find("sleep.n_pases"), std::string::npos) << e;
  EXPECT_NE(e.find(":2)"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean sleep.n_passes"), std::string::npos) << e;
}

TEST(ConfigDocument, UnknownOverrideKeySuggestsNearestKey) {
  const std::string e = error_of("{}", {"sleep.n_pases=2"});
  EXPECT_NE(e.find("sleep.n_pases"), std::string::npos) << e;
  EXPECT_NE(e.find("command line"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean sleep.n_passes"), std::string::npos) << e;
}

TEST(ConfigDocument, WrongTypeOutOfRangeAndBadEnumAreNamed) {
  EXPECT_NE(error_of("sleep:\n  n_passes: 2.5\n").find("sleep.n_passes: expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of("sleep:\n  n_passes: 0\n").find("out of range [1, 64]"), std::string::npos);
  EXPECT_NE(error_of("train:\n  lr: fast\n").find("train.lr: expected a number"),
            std::string::npos);
  EXPECT_NE(error_of("train:\n  flag: 1\n").find("train.flag: expected true or false"),
            std::string::npos);
  const std::string e = error_of("sleep:\n  mode: restrt\n");
  EXPECT_NE(e.find("expected one of thread | restart"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean restart"), std::string::npos) << e;
  EXPECT_NE(error_of("sleep:\n  loop_layers: 3\n").find("list of integers"), std::string::npos);
}

TEST(ConfigDocument, DuplicateYamlKeyIsAnErrorWithLine) {
  const std::string e = error_of("sleep:\n  n_passes: 2\n  n_passes: 3\n");
  EXPECT_NE(e.find("duplicate key 'sleep.n_passes'"), std::string::npos) << e;
  EXPECT_NE(e.find(":3"), std::string::npos) << e;
  EXPECT_NE(
      error_of("sleep:\n  n_passes: 2\nsleep:\n  mode: thread\n").find("duplicate key 'sleep'"),
      std::string::npos);
}

TEST(ConfigDocument, MalformedOverrideAndYamlAreErrors) {
  EXPECT_NE(error_of("{}", {"sleep.n_passes"}).find("key.path=value"), std::string::npos);
  EXPECT_NE(error_of("sleep: [1, 2\n").find("invalid YAML"), std::string::npos);
  EXPECT_NE(error_of("{}", {"sleep={n_passes: 2}"}).find("not a section"), std::string::npos);
}

TEST(ConfigDocument, ResolvedYamlRoundTripsByteForByte) {
  Root r;
  r.train.lr = 0.1 + 0.2;  // needs 17 digits
  r.sleep.loop_layers = {0, 2};
  r.train.name = "a \"quoted\" name";
  const std::string first = to_yaml(r);
  const Root back = load<Root>(write_temp("rt", first), {});
  EXPECT_EQ(back.train.lr, r.train.lr);
  EXPECT_EQ(to_yaml(back), first);
}

TEST(ConfigFormat, DoublesAlwaysCarryADotAndASignedExponent) {
  EXPECT_EQ(format_double(1.0), "1.0");
  EXPECT_EQ(format_double(2e-3), "0.002");
  EXPECT_EQ(format_double(1e-7), "1.0e-07");
  EXPECT_EQ(format_double(1e20), "1.0e+20");
  EXPECT_EQ(format_double(-2.5), "-2.5");
  for (double x : {1e-300, 0.1 + 0.2, 6.02214076e23, 5e-5}) {
    EXPECT_EQ(std::stod(format_double(x)), x);
  }
}

TEST(ConfigKeys, ListerNamesEveryKeyWithDefaults) {
  const auto keys = list_keys<Root>();
  ASSERT_EQ(keys.size(), 6u);
  EXPECT_EQ(keys[0].key, "sleep.n_passes");
  EXPECT_EQ(keys[0].default_value, "1");
  EXPECT_EQ(keys[0].range, "[1, 64]");
  EXPECT_EQ(keys[1].type, "thread | restart");
  EXPECT_EQ(keys[3].default_value, "0.002");
}

}  // namespace hypnos::config
