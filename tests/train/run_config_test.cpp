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

#include <nlohmann/json.hpp>

#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "io/scratch_dir.h"
#include "testing/errors.h"
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

// Tiny checkpoints at the real depths (Jet-Nemotron-2B's 28 layer types, Ouro-1.4B's 24 layers) for
// the configs that need model.from, written once per test process by hypnos's own export.
fs::path tiny_checkpoint(const std::string& family) {
  static const io::testing::ScratchDir root;  // removed when the test process exits
  const fs::path dir = root / family;
  if (fs::exists(dir / "config.json")) return dir;
  nlohmann::json c = {
      {"hidden_size", 32},        {"intermediate_size", 64}, {"num_attention_heads", 4},
      {"num_key_value_heads", 2}, {"vocab_size", 8192},      {"rope_theta", 1e6},
      {"rms_norm_eps", 1e-6},     {"hidden_act", "silu"},    {"max_position_embeddings", 4096}};
  if (family == "jet_nemotron") {
    c["model_type"] = "jet_nemotron";
    c["num_hidden_layers"] = 28;
    c["tie_word_embeddings"] = true;
    std::vector<std::string> types(28, "jet");
    types[14] = types[19] = "attn";
    types[20] = types[21] = "swa";
    c["layer_types"] = types;
    c["efficient_attention_config"] = {{"swa", {{"window_size", 8}}},
                                       {"jet",
                                        {{"num_heads", 2},
                                         {"head_dim", 8},
                                         {"expand_v", 2.0},
                                         {"conv_size", 4},
                                         {"dconv_generator_reduction", 8},
                                         {"norm_eps", "1e-5"}}}};
  } else {
    c["model_type"] = "ouro";
    c["num_hidden_layers"] = 24;
    c["head_dim"] = 8;
    c["total_ut_steps"] = 4;
    c["tie_word_embeddings"] = false;
  }
  const nn::HfConfig config = nn::parse_hf_config(c.dump(), family);
  nn::HybridLM model(config.options);
  nn::save_hf_checkpoint(model, dir, config.json);
  return dir;
}

// A config naming a placeholder model.from gets the tiny checkpoint of its family; its placeholder
// token files and stage-1 run give way to the generated word-level task (trained by train.steps)
// and no starting run: what these tests check is the rest of the config.
std::vector<std::string> checkpoint_overrides(const fs::path& file) {
  const auto raw = config::load<RunConfig>(file.string(), {});
  if (raw.model.from.empty()) return {};
  std::vector<std::string> out;
  if (!raw.task.gsm.token_file.empty()) {
    out = {"task.token_file=", "task.eval_token_file=", "train.epochs=0"};
  }
  if (!raw.train.init_from.empty()) out.push_back("train.init_from=");
  const std::string stem = file.stem().string();
  const std::string family = stem.rfind("jet_nemotron", 0) == 0 ? "jet_nemotron"
                             : stem.rfind("ouro", 0) == 0       ? "ouro"
                                                                : "";
  if (family.empty()) {
    ADD_FAILURE() << file << " needs model.from: name its family in checkpoint_overrides";
    return {};
  }
  out.push_back("model.from=" + tiny_checkpoint(family).string());
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
    EXPECT_NO_THROW(load_run_config(f.string(), checkpoint_overrides(f))) << f;
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
    auto overrides = checkpoint_overrides(f);
    overrides.push_back("optim.muon_lr=0.0021");
    const auto first = run_config_yaml(load_run_config(f.string(), overrides));
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

// The pretrained configs stop, naming what is missing, until model.from names a checkpoint and
// task.token_file a token file (stage 2 also train.init_from a run); Ouro's takes the run's
// inserted JetBlocks, Jet-Nemotron refuses them.
TEST(RunConfig, PretrainedConfigsNeedModelFromAndTheirData) {
  const fs::path dir = fs::path(hypnos::testing::source_dir()) / "configs" / "gsm_infinite";
  auto error_of = [&](const char* name, const std::vector<std::string>& overrides) {
    try {
      load_run_config((dir / name).string(), overrides);
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  for (const char* name : {"jet_nemotron_2b.yaml", "ouro_1p4b.yaml", "ouro_1p4b_sliding.yaml",
                           "ouro_1p4b_sliding_stage2.yaml"}) {
    const std::string family = name[0] == 'j' ? "jet_nemotron" : "ouro";
    const std::string from = "model.from=" + tiny_checkpoint(family).string();
    EXPECT_NE(error_of(name, {}).find("model.from: cannot read /path/to/"), std::string::npos)
        << name << ": " << error_of(name, {});
    EXPECT_NE(error_of(name, {from})
                  .find("task.token_file = /path/to/gsm_train.tokens: no such "
                        "file (write it with scripts/tokenize_gsm.py"),
              std::string::npos)
        << name << ": " << error_of(name, {from});
  }
  const std::string stage2 =
      error_of("ouro_1p4b_sliding_stage2.yaml",
               {"model.from=" + tiny_checkpoint("ouro").string(),
                "task.token_file=", "task.eval_token_file=", "train.epochs=0"});
  EXPECT_NE(stage2.find("train.init_from = /path/to/ouro_1p4b_sliding-stage1-run: not a hypnos "
                        "run directory"),
            std::string::npos)
      << stage2;
  EXPECT_NE(error_of("ouro_1p4b_sliding.yaml", {"model.from=" + tiny_checkpoint("ouro").string(),
                                                "task.token_file=", "task.eval_token_file="})
                .find("train.epochs = 1: the task's training data is generated, not a file"),
            std::string::npos);
  const RunConfig ouro = load_run_config((dir / "ouro_1p4b.yaml").string(),
                                         checkpoint_overrides(dir / "ouro_1p4b.yaml"));
  EXPECT_EQ(ouro.model.inserted_jet_after, (std::vector<int64_t>{3, 7, 11, 15, 19, 23}));
  EXPECT_EQ(ouro.model.n_blocks(), 30);
  EXPECT_EQ(ouro.model.d_model, 32) << "the width comes from config.json";
  const RunConfig jet = load_run_config((dir / "jet_nemotron_2b.yaml").string(),
                                        checkpoint_overrides(dir / "jet_nemotron_2b.yaml"));
  EXPECT_EQ(jet.model.pattern, "JJJJJJJJJJJJJJAJJJJASSJJJJJJ");
  auto overrides = checkpoint_overrides(dir / "jet_nemotron_2b.yaml");
  overrides.push_back("model.inserted_jet_after=[3]");
  try {
    load_run_config((dir / "jet_nemotron_2b.yaml").string(), overrides);
    ADD_FAILURE() << "JetBlocks inserted into Jet-Nemotron";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("inserted only into an Ouro checkpoint"),
              std::string::npos)
        << e.what();
  }
}

/// The config error of a run config with these overrides ("" when it loads).
std::string error_of(const std::vector<std::string>& overrides) {
  return testing::error_message<config::ConfigError>([&] { load_run_config("", overrides); });
}

TEST(RunConfig, CrossSectionErrorsNameTheKeys) {
  EXPECT_NE(error_of({"train.batch_size=10", "train.grad_accum=3"}).find("train.grad_accum"),
            std::string::npos);
  EXPECT_NE(error_of({"sleep.loop_layers=[1, 9]"}).find("loop_layers"), std::string::npos);
  EXPECT_NE(error_of({"sleep.n_pases=2"}).find("did you mean sleep.n_passes"), std::string::npos);
  EXPECT_NE(error_of({"task.n_max=5"}).find("unknown key 'task.n_max'"), std::string::npos)
      << "Depo's key is unknown when the task is rule110";
  EXPECT_EQ(error_of({"task.name=depo", "task.n_max=40"}), "");
}

// train.epochs over a file of 5 problems in batches of 2: train.steps = ceil(epochs x 5 / 2); an
// evaluation asking for more problems than the file holds is refused before training.
TEST(RunConfig, EpochsSetTheStepsFromTheFilesProblems) {
  io::testing::ScratchDir dir;
  std::string lines;
  for (int i = 0; i < 5; ++i) {
    lines += R"({"question": "What is the number of adult owls in Hamilton?", "problem": "The )"
             R"(number of adult owls in Hamilton equals )" +
             std::to_string(i) + R"(.", "solution": "Answer: )" + std::to_string(i) +
             R"(.", "op": 1})" + "\n";
  }
  std::ofstream(dir / "gsm.jsonl") << lines;
  const std::vector<std::string> base{"task.name=gsm_infinite",
                                      "task.data_file=" + (dir / "gsm.jsonl").string(),
                                      "train.batch_size=2", "train.eval_examples=5"};
  auto with = [&](const std::string& extra) {
    auto v = base;
    v.push_back(extra);
    return v;
  };
  EXPECT_EQ(load_run_config("", with("train.epochs=1")).train.steps, 3);
  EXPECT_EQ(load_run_config("", with("train.epochs=3")).train.steps, 8);
  EXPECT_EQ(load_run_config("", with("train.steps=7")).train.steps, 7) << "epochs 0: steps";
  try {
    load_run_config("", with("train.eval_examples=6"));
    ADD_FAILURE() << "an evaluation of 6 problems out of 5";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.eval_examples = 6: the task's test file holds 5 "
                                         "problems (task.data_file)"),
              std::string::npos)
        << e.what();
  }
  try {
    load_run_config("", {"train.epochs=1"});
    ADD_FAILURE() << "epochs of a generated task";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.epochs = 1: the task's training data is generated"),
              std::string::npos)
        << e.what();
  }
}

TEST(RunConfig, ParamDtypeIsFp32OrBf16AndBf16NeedsBf16Precision) {
  EXPECT_EQ(load_run_config("", {}).train.param_dtype, ParamDtype::kFp32);
  EXPECT_EQ(error_of({"train.param_dtype=bf16"}), "");  // precision is bf16 by default
  const std::string bad = error_of({"train.param_dtype=fp16"});
  EXPECT_NE(bad.find("train.param_dtype"), std::string::npos) << bad;
  EXPECT_NE(bad.find("fp32 | bf16"), std::string::npos) << bad;
  const std::string both = error_of({"train.param_dtype=bf16", "train.precision=fp32"});
  EXPECT_NE(both.find("train.param_dtype = bf16 needs train.precision = bf16"), std::string::npos)
      << both;
  EXPECT_EQ(error_of({"train.param_dtype=fp32", "train.precision=fp32"}), "");
}

TEST(RunConfig, VocabularyComesFromTheTask) {
  EXPECT_EQ(load_run_config("", {}).model.vocab_size, 6);
  EXPECT_EQ(load_run_config("", {"task.name=depo"}).model.vocab_size, 118);
}

}  // namespace hypnos::train
