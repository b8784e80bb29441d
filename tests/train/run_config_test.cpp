// The run configuration as users meet it: every file under configs/ loads, configs/README.md
// documents every key of every task, the resolved YAML reloads byte for byte and PyYAML reads its
// floats as floats (docs/reliability.md R1, R2).
#include "hypnos/train/run_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "testing/paths.h"

namespace hypnos::train {
namespace {
namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<fs::path> config_files() {
  std::vector<fs::path> out;
  for (const auto& e :
       fs::recursive_directory_iterator(fs::path(hypnos::testing::source_dir()) / "configs")) {
    if (e.path().extension() == ".yaml") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every key for every task (the task section's keys depend on task.name).
std::vector<config::KeyInfo> all_keys() {
  std::vector<config::KeyInfo> keys;
  std::set<std::string> seen;
  for (auto name :
       {tasks::TaskName::kRule110, tasks::TaskName::kDepo, tasks::TaskName::kGsmInfinite}) {
    RunConfig c;
    c.task.name = name;
    for (auto& k : config::list_keys(c)) {
      if (seen.insert(k.key).second) keys.push_back(k);
    }
  }
  return keys;
}

std::string key_table() {
  std::string s = "| key | type | default | range | meaning |\n| --- | --- | --- | --- | --- |\n";
  for (const auto& k : all_keys()) {
    s += "| `" + k.key + "` | " + k.type + " | `" + k.default_value + "` | " + k.range + " | " +
         k.doc + " |\n";
  }
  return s;
}

}  // namespace

TEST(RunConfig, EveryConfigFileLoads) {
  const auto files = config_files();
  ASSERT_FALSE(files.empty());
  for (const auto& f : files) {
    EXPECT_NO_THROW(load_run_config(f.string(), {})) << f;
  }
}

TEST(RunConfig, ReadmeDocumentsEveryKey) {
  const fs::path readme = fs::path(hypnos::testing::source_dir()) / "configs" / "README.md";
  if (std::getenv("HYPNOS_WRITE_CONFIG_DOC")) {  // regenerates the table between the markers
    std::string text = read(readme);
    const std::string begin = "<!-- keys:begin -->\n", end = "<!-- keys:end -->";
    const auto a = text.find(begin), b = text.find(end);
    ASSERT_NE(a, std::string::npos);
    ASSERT_NE(b, std::string::npos);
    text = text.substr(0, a + begin.size()) + key_table() + text.substr(b);
    std::ofstream(readme) << text;
  }
  const std::string text = read(readme);
  for (const auto& k : all_keys()) {
    EXPECT_NE(text.find("| `" + k.key + "` |"), std::string::npos)
        << k.key << " is not documented in configs/README.md (rerun this test with "
        << "HYPNOS_WRITE_CONFIG_DOC=1)";
  }
}

TEST(RunConfig, ResolvedConfigReloadsByteForByte) {
  for (const auto& f : config_files()) {
    const auto first = run_config_yaml(load_run_config(f.string(), {"optim.muon_lr=0.0021"}));
    const auto tmp =
        fs::temp_directory_path() / ("hypnos_resolved_" + std::to_string(::getpid()) + ".yaml");
    std::ofstream(tmp) << first;
    EXPECT_EQ(run_config_yaml(load_run_config(tmp.string(), {})), first) << f;
  }
}

TEST(RunConfig, PyYamlReadsFloatsAsFloats) {
  RunConfig c;
  c.model.vocab_size = 6;
  c.optim.muon_lr = 2e-3;
  c.optim.adamw_lr = 1e-7;
  c.optim.grad_clip = 1.0;
  const auto tmp =
      fs::temp_directory_path() / ("hypnos_pyyaml_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(tmp) << run_config_yaml(c);
  const std::string cmd =
      std::string(hypnos::testing::python()) +
      " -c \"import yaml,sys; d=yaml.safe_load(open(sys.argv[1])); o=d['optim'];"
      " ok=all(type(o[k]) is float for k in ('muon_lr','adamw_lr','grad_clip'));"
      " ok=ok and o['adamw_lr']==1e-7 and type(d['train']['steps']) is int;"
      " sys.exit(0 if ok else 1)\" " +
      tmp.string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "PyYAML read a float as something else:\n"
                                         << run_config_yaml(c);
}

TEST(RunConfig, CrossSectionErrorsNameTheKeys) {
  auto error_of = [](std::vector<std::string> overrides) -> std::string {
    try {
      load_run_config("", overrides);
    } catch (const config::ConfigError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of({"train.batch_size=10", "train.grad_accum=3"}).find("train.grad_accum"),
            std::string::npos);
  EXPECT_NE(error_of({"sleep.loop_layers=[1, 9]"}).find("loop_layers"), std::string::npos);
  EXPECT_NE(error_of({"sleep.n_pases=2"}).find("did you mean sleep.n_passes"), std::string::npos);
  EXPECT_NE(error_of({"task.n_max=5"}).find("unknown key 'task.n_max'"), std::string::npos)
      << "Depo's key is unknown when the task is rule110";
  EXPECT_EQ(error_of({"task.name=depo", "task.n_max=40"}), "");
}

TEST(RunConfig, VocabularyComesFromTheTask) {
  EXPECT_EQ(load_run_config("", {}).model.vocab_size, 6);
  EXPECT_EQ(load_run_config("", {"task.name=depo"}).model.vocab_size, 118);
}

}  // namespace hypnos::train
