// Pretrained checkpoints in the Hugging Face layout: config.json read into ModelOptions with errors
// that name the field, the load report (missing, unexpected, mis-shaped tensors; the gaps a family
// declares), dtype conversion, and export -> import bit for bit, single-file and sharded.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hypnos/io/safetensors.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "io/scratch_dir.h"
#include "testing/numeric.h"

namespace hypnos::nn {
namespace {

// The tiny Jet-Nemotron of the reference implementation's --make-tiny (6 layers, K = 16, V = 32).
nlohmann::json tiny_jet_config() {
  return nlohmann::json::parse(R"({
    "model_type": "jet_nemotron", "architectures": ["JetNemotronForCausalLM"],
    "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 256, "rope_theta": 10000.0, "rope_scaling": null,
    "rms_norm_eps": 1e-06, "hidden_act": "silu", "num_hidden_layers": 6,
    "layer_types": ["jet", "jet", "attn", "swa", "jet", "jet"], "tie_word_embeddings": true,
    "efficient_attention_config": {"swa": {"window_size": 8},
      "jet": {"mode": "chunk", "num_heads": 2, "head_dim": 16, "expand_v": 2.0, "conv_size": 4,
              "dconv_generator_reduction": 8, "dconv_implementation": "naive", "norm_eps": "1e-5"}}
  })");
}

std::string error_of(const nlohmann::json& config) {
  try {
    parse_hf_config(config.dump(), "dir/config.json");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

HybridLM random_model(const HfConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  HybridLM m(config.options);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0, 0.5);
  return m;
}

}  // namespace

TEST(HfConfig, JetNemotronConfigGivesTheArchitecture) {
  const HfConfig c = parse_hf_config(tiny_jet_config().dump());
  const ModelOptions& o = c.options;
  EXPECT_EQ(c.family, "jet_nemotron");
  EXPECT_EQ(o.pattern, "JJASJJ");
  EXPECT_EQ(o.vocab_size, 256);
  EXPECT_EQ(o.d_model, 64);
  EXPECT_EQ(o.mlp, MlpKind::kSwiglu);
  EXPECT_EQ(o.mlp_hidden, 128);
  EXPECT_EQ(o.n_heads, 4);
  EXPECT_EQ(o.resolved_n_kv_heads(), 2);
  EXPECT_EQ(o.resolved_head_dim(), 16);
  EXPECT_TRUE(o.attn_bias);
  EXPECT_EQ(o.rope_style, RopeStyle::kHalf);
  EXPECT_EQ(o.rope_base, 10000.0);
  EXPECT_EQ(o.swa_window, 8);
  EXPECT_EQ(o.resolved_ssm_heads(), 2);
  EXPECT_EQ(o.resolved_head_dim_k(), 16);
  EXPECT_EQ(o.resolved_head_dim_v(), 32);
  EXPECT_EQ(o.generator_reduction, 8);
  EXPECT_EQ(o.norm_eps, 1e-6);
  EXPECT_EQ(o.resolved_ssm_norm_eps(), 1e-5);  // the JetBlock output norm's own, from a string
  EXPECT_TRUE(o.tie_embeddings);
  EXPECT_EQ(o.names, ParameterNames::kHf);
  EXPECT_EQ(c.optional_keys, std::vector<std::string>{"lm_head.weight"});

  // The released 2B geometry: K = 96, V = int(96 * 2.6666666667) = 256, no head_dim field.
  auto big = tiny_jet_config();
  big["hidden_size"] = 1536;
  big["num_attention_heads"] = 12;
  big["efficient_attention_config"]["jet"]["num_heads"] = 12;
  big["efficient_attention_config"]["jet"]["head_dim"] = 96;
  big["efficient_attention_config"]["jet"]["expand_v"] = 2.6666666667;
  const ModelOptions b = parse_hf_config(big.dump()).options;
  EXPECT_EQ(b.resolved_head_dim(), 128);
  EXPECT_EQ(b.resolved_head_dim_k(), 96);
  EXPECT_EQ(b.resolved_head_dim_v(), 256);
}

TEST(HfConfig, AMissingOrWrongFieldIsNamedWithItsFile) {
  auto c = tiny_jet_config();
  c.erase("hidden_size");
  EXPECT_NE(error_of(c).find("dir/config.json: hidden_size: missing"), std::string::npos)
      << error_of(c);
  c = tiny_jet_config();
  c["layer_types"][3] = "mamba";
  EXPECT_NE(error_of(c).find("layer_types[3]: expected jet, attn or swa"), std::string::npos);
  c = tiny_jet_config();
  c["layer_types"].erase(0);
  EXPECT_NE(error_of(c).find("layer_types: has 5 entries, num_hidden_layers is 6"),
            std::string::npos);
  c = tiny_jet_config();
  c["efficient_attention_config"]["jet"]["norm_eps"] = "1e-5x";
  EXPECT_NE(error_of(c).find("efficient_attention_config.jet.norm_eps: expected a number"),
            std::string::npos);
  c = tiny_jet_config();
  c["efficient_attention_config"].erase("swa");
  EXPECT_NE(error_of(c).find("efficient_attention_config.swa: missing"), std::string::npos);
  c = tiny_jet_config();
  c["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(c).find("num_key_value_heads: must divide"), std::string::npos);
  c = tiny_jet_config();
  c["rope_scaling"] = {{"type", "yarn"}};
  EXPECT_NE(error_of(c).find("rope_scaling: not implemented"), std::string::npos);
  c = tiny_jet_config();
  c["model_type"] = "llama";
  EXPECT_NE(error_of(c).find("model_type: \"llama\" is not a family"), std::string::npos);
  EXPECT_NE(error_of(nlohmann::json::array()).find("expected an object"), std::string::npos);
}

TEST(HfCheckpoint, ExportThenImportIsBitForBitSingleFileAndSharded) {
  io::testing::ScratchDir dir;
  const HfConfig config = parse_hf_config(tiny_jet_config().dump());
  HybridLM m = random_model(config, 1);
  for (int64_t shards : {1, 3}) {
    const auto out = dir.path() / ("shards" + std::to_string(shards));
    save_hf_checkpoint(m, out, config.json, shards);
    EXPECT_EQ(hf_checkpoint_files(out).size(), static_cast<size_t>(shards));
    const PretrainedModel loaded = load_pretrained(out);
    EXPECT_TRUE(loaded.report.ok()) << loaded.report.text();
    EXPECT_EQ(loaded.report.absent_allowed, std::vector<std::string>{"lm_head.weight"});
    auto a = m->named_parameters(), b = loaded.model->named_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (const auto& p : a) EXPECT_TRUE(at::equal(p.value(), b[p.key()])) << p.key();
    EXPECT_EQ(loaded.report.loaded, static_cast<int64_t>(a.size()));
    // Saving the loaded model again writes the same bytes.
    const auto again = dir.path() / ("again" + std::to_string(shards));
    auto lm = loaded.model;
    save_hf_checkpoint(lm, again, loaded.config.json, shards);
    for (const auto& f : hf_checkpoint_files(out)) {
      EXPECT_EQ(file_bytes(f), file_bytes(again / f.filename())) << f;
    }
    EXPECT_EQ(file_bytes(out / "config.json"), file_bytes(again / "config.json"));
  }
}

TEST(HfCheckpoint, Bf16AndFp16FilesLoadIntoFp32Parameters) {
  io::testing::ScratchDir dir;
  const HfConfig config = parse_hf_config(tiny_jet_config().dump());
  HybridLM m = random_model(config, 2);
  for (auto dtype : {at::kBFloat16, at::kHalf}) {
    const auto out = dir.path() / std::string(c10::toString(dtype));
    save_hf_checkpoint(m, out, config.json, 2, dtype);
    const PretrainedModel loaded = load_pretrained(out);
    for (const auto& p : m->named_parameters()) {
      const at::Tensor got = loaded.model->named_parameters()[p.key()];
      EXPECT_EQ(got.scalar_type(), at::kFloat);
      EXPECT_TRUE(at::equal(got, p.value().to(dtype).to(at::kFloat))) << p.key();
    }
  }
}

// A bf16 load builds the model in bf16 (no fp32 copy first) and leaves the process's default dtype
// as it was, also when the build throws; the weights are the bf16 file's, bit for bit.
TEST(HfCheckpoint, Bf16LoadBuildsInBf16AndRestoresTheDefaultDtype) {
  io::testing::ScratchDir dir;
  const HfConfig config = parse_hf_config(tiny_jet_config().dump());
  HybridLM m = random_model(config, 3);
  save_hf_checkpoint(m, dir.path() / "bf16", config.json, 1, at::kBFloat16);
  const PretrainedModel loaded = load_pretrained(dir.path() / "bf16", at::kBFloat16);
  EXPECT_EQ(at::get_default_dtype(), caffe2::TypeMeta::Make<float>());
  for (const auto& p : m->named_parameters()) {
    const at::Tensor got = loaded.model->named_parameters()[p.key()];
    EXPECT_EQ(got.scalar_type(), at::kBFloat16) << p.key();
    EXPECT_TRUE(at::equal(got, p.value().to(at::kBFloat16))) << p.key();
  }
  ModelOptions bad = config.options;
  bad.pattern = "JQ";  // no such block letter
  EXPECT_ANY_THROW(build_in_dtype(bad, at::kBFloat16));
  EXPECT_EQ(at::get_default_dtype(), caffe2::TypeMeta::Make<float>());
}

TEST(HfCheckpoint, TheLoadReportNamesEveryMissingUnexpectedAndMisshapedTensor) {
  io::testing::ScratchDir dir;
  const HfConfig config = parse_hf_config(tiny_jet_config().dump());
  HybridLM m = random_model(config, 3);
  io::NamedTensors tensors;
  for (const auto& p : m->named_parameters()) {
    if (p.key() == "model.layers.2.self_attn.q_proj.bias") continue;  // missing
    at::Tensor t = p.value().detach();
    if (p.key() == "model.layers.0.self_attn.o_norm.weight") t = t.narrow(0, 0, 31);  // shape
    tensors.emplace_back(p.key(), t);
  }
  tensors.emplace_back("model.layers.9.mlp.up_proj.weight", torch::zeros({2, 2}));  // unexpected
  const auto out = dir.path() / "bad";
  std::filesystem::create_directories(out);
  io::save_safetensors(out / "model.safetensors", tensors);
  std::ofstream(out / "config.json") << config.json;
  std::string message;
  try {
    load_pretrained(out);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("FAILED"), std::string::npos) << message;
  EXPECT_NE(message.find("missing (1):\n    model.layers.2.self_attn.q_proj.bias"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("unexpected (1):\n    model.layers.9.mlp.up_proj.weight"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("model.layers.0.self_attn.o_norm.weight: file [31], model [32]"),
            std::string::npos)
      << message;
  // A checkpoint with no weights file, or an index naming an absent shard.
  const auto empty = dir.path() / "empty";
  std::filesystem::create_directories(empty);
  std::ofstream(empty / "config.json") << config.json;
  EXPECT_THROW(load_pretrained(empty), std::runtime_error);
  std::ofstream(empty / "model.safetensors.index.json")
      << R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})";
  try {
    load_pretrained(empty);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("shard model-00001-of-00002.safetensors does not exist"),
              std::string::npos)
        << e.what();
  }
}

TEST(HfCheckpoint, ATiedHeadInTheFileMustEqualTheEmbedding) {
  io::testing::ScratchDir dir;
  const HfConfig config = parse_hf_config(tiny_jet_config().dump());
  HybridLM m = random_model(config, 4);
  for (bool equal : {true, false}) {
    io::NamedTensors tensors;
    for (const auto& p : m->named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
    const at::Tensor embed = m->embed_tokens->weight.detach();
    tensors.emplace_back("lm_head.weight", equal ? embed : embed + 1.0);
    const auto out = dir.path() / (equal ? "equal" : "differs");
    std::filesystem::create_directories(out);
    io::save_safetensors(out / "model.safetensors", tensors);
    std::ofstream(out / "config.json") << config.json;
    if (equal) {
      const auto loaded = load_pretrained(out);
      EXPECT_EQ(loaded.report.tied_checked, std::vector<std::string>{"lm_head.weight"});
      EXPECT_TRUE(loaded.report.absent_allowed.empty());
    } else {
      EXPECT_THROW(load_pretrained(out), std::runtime_error);
    }
  }
}

TEST(HfConfig, OuroConfigGivesSandwichLoopsAndInsertedJetBlocks) {
  auto c = nlohmann::json::parse(R"({
    "model_type": "ouro", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 256, "rope_theta": 10000.0, "rope_scaling": null,
    "rms_norm_eps": 1e-06, "hidden_act": "silu", "num_hidden_layers": 4, "head_dim": 16,
    "layer_types": ["full_attention", "full_attention", "full_attention", "full_attention"],
    "total_ut_steps": 2, "tie_word_embeddings": false, "use_sliding_window": false,
    "jet_layers_after": [1, 3],
    "efficient_attention_config": {"jet": {"num_heads": 2, "head_dim": 16, "expand_v": 2.0,
      "conv_size": 4, "dconv_generator_reduction": 8, "norm_eps": "1e-5"}}
  })");
  const HfConfig config = parse_hf_config(c.dump());
  const ModelOptions& o = config.options;
  EXPECT_EQ(config.family, "ouro");
  EXPECT_EQ(o.pattern, "AAAA");
  EXPECT_EQ(o.inserted_jet_after, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(o.n_blocks(), 6);
  EXPECT_TRUE(o.sandwich);
  EXPECT_TRUE(o.loop_norm);
  EXPECT_TRUE(o.exit_gate);
  EXPECT_FALSE(o.attn_bias);
  EXPECT_FALSE(o.tie_embeddings);
  EXPECT_EQ(o.ut_steps, 2);
  EXPECT_EQ(o.resolved_head_dim_v(), 32);
  EXPECT_EQ(config.optional_keys, std::vector<std::string>{"model.jet_layers."});
  c["jet_layers_after"][1] = 4;
  EXPECT_NE(error_of(c).find("jet_layers_after[1]: expected a layer index in [0, 4)"),
            std::string::npos)
      << error_of(c);
  c["jet_layers_after"][1] = 3;
  c["layer_types"][2] = "sliding_attention";
  EXPECT_NE(error_of(c).find("layer_types[2]: only full_attention is implemented"),
            std::string::npos);
  c["layer_types"][2] = "full_attention";
  c.erase("total_ut_steps");
  EXPECT_NE(error_of(c).find("total_ut_steps: missing"), std::string::npos);
}

TEST(HfCheckpoint, JetBlocksInsertedIntoAStockOuroCheckpointStartAsNoOps) {
  io::testing::ScratchDir dir;
  auto c = nlohmann::json::parse(R"({
    "model_type": "ouro", "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 2,
    "num_key_value_heads": 2, "vocab_size": 50, "rope_theta": 10000.0, "rms_norm_eps": 1e-06,
    "num_hidden_layers": 3, "total_ut_steps": 2, "tie_word_embeddings": false
  })");
  const HfConfig stock = parse_hf_config(c.dump());
  HybridLM m = random_model(stock, 5);
  save_hf_checkpoint(m, dir.path() / "stock", stock.json);
  c["jet_layers_after"] = {0, 2};
  c["efficient_attention_config"] = {{"jet",
                                      {{"num_heads", 2},
                                       {"head_dim", 8},
                                       {"expand_v", 2.0},
                                       {"conv_size", 4},
                                       {"dconv_generator_reduction", 4}}}};
  std::ofstream(dir.path() / "stock" / "config.json") << c.dump();
  PretrainedModel grown = load_pretrained(dir.path() / "stock");
  EXPECT_EQ(grown.model->n_layers(), 5);
  EXPECT_EQ(grown.report.missing, std::vector<std::string>{});
  EXPECT_GT(grown.report.absent_allowed.size(), 20u);
  EXPECT_EQ(grown.report.absent_allowed[0].rfind("model.jet_layers.", 0), 0u);
  const auto tokens = torch::randint(0, 50, {2, 9});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(grown.model->decoder->jet_layers[1]->as<BlockImpl>()->jet->o_proj->weight,
                        torch::zeros({32, 32})));
  EXPECT_LT(testing::relative_error(grown.model->forward(tokens), m->forward(tokens)), 1e-6);

  // A checkpoint holding an inserted block in part is refused.
  io::NamedTensors tensors;
  for (const auto& p : grown.model->named_parameters()) {
    if (p.key() != "model.jet_layers.1.self_attn.A_log") tensors.emplace_back(p.key(), p.value());
  }
  std::filesystem::create_directories(dir.path() / "part");
  io::save_safetensors(dir.path() / "part" / "model.safetensors", tensors);
  std::ofstream(dir.path() / "part" / "config.json") << c.dump();
  try {
    load_pretrained(dir.path() / "part");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing (1):\n    model.jet_layers.1.self_attn.A_log"),
              std::string::npos)
        << e.what();
  }
}

// A run that inserted JetBlocks into a stock Ouro checkpoint exports a config.json describing them
// (jet_layers_after and efficient_attention_config.jet added to the source's), so that the export
// loads back as the same model: every tensor loaded, none absent, the same logits bit for bit. A
// model without insertions still writes its source config.json byte for byte.
TEST(HfCheckpoint, AnOuroExportWithInsertedJetBlocksReloadsAsTheSameModel) {
  io::testing::ScratchDir dir;
  const std::string stock_json = R"({"model_type": "ouro", "hidden_size": 32,
    "intermediate_size": 48, "num_attention_heads": 2, "num_key_value_heads": 2,
    "vocab_size": 50, "rope_theta": 10000.0, "rms_norm_eps": 1e-06, "num_hidden_layers": 3,
    "total_ut_steps": 2, "tie_word_embeddings": false})";
  const HfConfig stock = parse_hf_config(stock_json);
  HybridLM plain = random_model(stock, 11);
  save_hf_checkpoint(plain, dir.path() / "stock", stock.json);
  EXPECT_EQ(file_bytes(dir.path() / "stock" / "config.json"), stock_json);

  // The run's model (pretrained_run_options: the run's inserted blocks and JetBlock keys), with
  // every weight random so that the inserted blocks are not no-ops.
  ModelOptions grown = stock.options;
  grown.inserted_jet_after = {2, 0};
  grown.ssm_heads = 2;
  grown.head_dim_k = 11;
  grown.head_dim_v = 15;  // 11 * (15.0 / 11) truncates to 14: expand_v must be a hair above it
  grown.conv_size = 3;
  grown.generator_reduction = 5;
  grown.ssm_norm_eps = 3e-5;
  torch::manual_seed(12);
  HybridLM tuned(grown);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : tuned->parameters()) p.normal_(0, 0.5);
  }
  save_hf_checkpoint(tuned, dir.path() / "export", stock.json, 2);
  const auto written = nlohmann::json::parse(file_bytes(dir.path() / "export" / "config.json"));
  EXPECT_EQ(written["jet_layers_after"], nlohmann::json({2, 0}));
  EXPECT_EQ(written["total_ut_steps"], 2) << "the source's keys are kept";

  PretrainedModel back = load_pretrained(dir.path() / "export");
  EXPECT_EQ(back.config.options.inserted_jet_after, grown.inserted_jet_after);
  EXPECT_EQ(back.config.options.resolved_head_dim_k(), 11);
  EXPECT_EQ(back.config.options.resolved_head_dim_v(), 15);
  EXPECT_EQ(back.config.options.conv_size, 3);
  EXPECT_EQ(back.config.options.generator_reduction, 5);
  EXPECT_EQ(back.config.options.ssm_norm_eps, 3e-5);
  EXPECT_TRUE(back.report.ok()) << back.report.text();
  EXPECT_EQ(back.report.absent_allowed, std::vector<std::string>{}) << back.report.text();
  EXPECT_EQ(back.report.loaded, static_cast<int64_t>(tuned->parameters().size()));
  const auto tokens = torch::randint(0, 50, {2, 9});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(back.model->forward(tokens), tuned->forward(tokens)));

  // The reloaded model exports its own config.json verbatim; a source that inserts other blocks
  // describes another model and is refused.
  save_hf_checkpoint(back.model, dir.path() / "again", back.config.json);
  EXPECT_EQ(file_bytes(dir.path() / "again" / "config.json"), back.config.json);
  grown.inserted_jet_after = {1};
  EXPECT_THROW(hf_config_json(back.config.json, grown), std::invalid_argument);
}

}  // namespace hypnos::nn
