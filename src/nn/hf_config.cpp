// config.json of a pretrained family -> ModelOptions (the field names are Hugging Face's).
#include "hypnos/nn/hf_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace hypnos::nn {
namespace {

using nlohmann::json;

/// Errors name the file and the field's path inside it (efficient_attention_config.jet.head_dim).
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw std::invalid_argument(source_ + ": " + field + ": " + what);
  }

  const json& object(const json& parent, const std::string& key, const std::string& path) const {
    const json& v = required(parent, key, path);
    if (!v.is_object()) fail(path, "expected an object, got " + v.dump());
    return v;
  }

  const json& required(const json& parent, const std::string& key, const std::string& path) const {
    const auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) fail(path, "missing");
    return *it;
  }

  int64_t integer(const json& parent, const std::string& key, const std::string& path,
                  int64_t min = 1) const {
    const json& v = required(parent, key, path);
    if (!v.is_number_integer()) fail(path, "expected an integer, got " + v.dump());
    const int64_t x = v.get<int64_t>();
    if (x < min) fail(path, "expected an integer >= " + std::to_string(min) + ", got " + v.dump());
    return x;
  }

  /// A number, or a string holding one (Jet-Nemotron writes jet.norm_eps as "1e-5").
  double number(const json& parent, const std::string& key, const std::string& path) const {
    const json& v = required(parent, key, path);
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      try {
        size_t used = 0;
        const double x = std::stod(s, &used);
        if (used == s.size()) return x;
      } catch (const std::exception&) {
      }
    }
    fail(path, "expected a number, got " + v.dump());
  }

  std::string string(const json& parent, const std::string& key, const std::string& path) const {
    const json& v = required(parent, key, path);
    if (!v.is_string()) fail(path, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }

 private:
  std::string source_;
};

/// efficient_attention_config.jet: the JetBlocks' geometry (Jet-Nemotron's layers, Ouro's inserts).
void read_jet(const json& eff, const Reader& r, ModelOptions& o) {
  const std::string p = "efficient_attention_config.jet.";
  const json& jet = r.object(eff, "jet", "efficient_attention_config.jet");
  o.ssm_heads = r.integer(jet, "num_heads", p + "num_heads");
  o.head_dim_k = r.integer(jet, "head_dim", p + "head_dim");
  const double expand_v = r.number(jet, "expand_v", p + "expand_v");
  // Upstream: head_v_dim = int(head_dim * expand_v), truncated (96 * 2.6666666667 -> 256).
  o.head_dim_v = static_cast<int64_t>(std::trunc(static_cast<double>(o.head_dim_k) * expand_v));
  if (o.head_dim_v < 1) r.fail(p + "expand_v", "gives a value head dim below 1");
  o.conv_size = r.integer(jet, "conv_size", p + "conv_size");
  o.generator_reduction =
      r.integer(jet, "dconv_generator_reduction", p + "dconv_generator_reduction");
  if ((o.ssm_heads * o.head_dim_v) % o.generator_reduction != 0) {
    r.fail(p + "dconv_generator_reduction",
           "must divide the value width " + std::to_string(o.ssm_heads * o.head_dim_v));
  }
  // The JetBlock output norm's own epsilon (1e-5 in the released model; upstream's default).
  o.ssm_norm_eps = jet.contains("norm_eps") ? r.number(jet, "norm_eps", p + "norm_eps") : 1e-5;
}

/// What Jet-Nemotron and Ouro share: Qwen2-style attention geometry, SwiGLU, RoPE, norms, head.
void read_common(const json& c, const Reader& r, HfConfig& out) {
  ModelOptions& o = out.options;
  o.names = ParameterNames::kHf;
  o.mlp = MlpKind::kSwiglu;
  o.rope_style = RopeStyle::kHalf;
  o.vocab_size = r.integer(c, "vocab_size", "vocab_size");
  o.d_model = r.integer(c, "hidden_size", "hidden_size");
  o.mlp_hidden = r.integer(c, "intermediate_size", "intermediate_size");
  o.n_heads = r.integer(c, "num_attention_heads", "num_attention_heads");
  o.n_kv_heads = c.contains("num_key_value_heads") && !c["num_key_value_heads"].is_null()
                     ? r.integer(c, "num_key_value_heads", "num_key_value_heads")
                     : o.n_heads;
  if (o.n_heads % o.n_kv_heads != 0) {
    r.fail("num_key_value_heads", "must divide num_attention_heads (" + std::to_string(o.n_heads) +
                                      "), got " + std::to_string(o.n_kv_heads));
  }
  if (c.contains("head_dim") && !c["head_dim"].is_null()) {
    o.head_dim = r.integer(c, "head_dim", "head_dim");
  } else if (o.d_model % o.n_heads != 0) {
    r.fail("hidden_size", "must be a multiple of num_attention_heads when head_dim is absent");
  }
  o.rope_base = c.contains("rope_theta") ? r.number(c, "rope_theta", "rope_theta") : 10000.0;
  if (c.contains("rope_scaling") && !c["rope_scaling"].is_null()) {
    r.fail("rope_scaling", "not implemented (only null), got " + c["rope_scaling"].dump());
  }
  if (c.contains("hidden_act") && r.string(c, "hidden_act", "hidden_act") != "silu") {
    r.fail("hidden_act", "only silu is implemented, got " + c["hidden_act"].dump());
  }
  o.norm_eps = r.number(c, "rms_norm_eps", "rms_norm_eps");
  o.tie_embeddings = c.value("tie_word_embeddings", false);
  if (o.tie_embeddings) out.optional_keys.push_back("lm_head.weight");
}

/// Ouro: sandwich layers of full attention (no biases), the final norm after every loop,
/// total_ut_steps loops in the ordinary forward, the early-exit gate kept; optionally JetBlocks
/// without MLP inserted after the layers jet_layers_after names (geometry in
/// efficient_attention_config.jet).
void read_ouro(const json& c, const Reader& r, HfConfig& out) {
  read_common(c, r, out);
  ModelOptions& o = out.options;
  o.attn_bias = false;
  o.sandwich = true;
  o.loop_norm = true;
  o.exit_gate = true;
  o.ut_steps = r.integer(c, "total_ut_steps", "total_ut_steps");
  const int64_t layers = r.integer(c, "num_hidden_layers", "num_hidden_layers");
  if (c.contains("layer_types") && !c["layer_types"].is_null()) {
    const json& types = c["layer_types"];
    if (!types.is_array() || static_cast<int64_t>(types.size()) != layers) {
      r.fail("layer_types", "expected a list of num_hidden_layers (" + std::to_string(layers) +
                                ") entries, got " + types.dump());
    }
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] != "full_attention") {
        r.fail("layer_types[" + std::to_string(i) + "]",
               "only full_attention is implemented, got " + types[i].dump());
      }
    }
  }
  if (c.value("use_sliding_window", false)) {
    r.fail("use_sliding_window", "sliding-window Ouro layers are not implemented");
  }
  o.pattern = std::string(static_cast<size_t>(layers), 'A');
  if (c.contains("jet_layers_after") && !c["jet_layers_after"].is_null()) {
    const json& after = c["jet_layers_after"];
    if (!after.is_array()) r.fail("jet_layers_after", "expected a list, got " + after.dump());
    for (size_t k = 0; k < after.size(); ++k) {
      const std::string at = "jet_layers_after[" + std::to_string(k) + "]";
      if (!after[k].is_number_integer() || after[k].get<int64_t>() < 0 ||
          after[k].get<int64_t>() >= layers) {
        r.fail(at, "expected a layer index in [0, " + std::to_string(layers) + "), got " +
                       after[k].dump());
      }
      o.inserted_jet_after.push_back(after[k].get<int64_t>());
    }
    if (!o.inserted_jet_after.empty()) {
      read_jet(r.object(c, "efficient_attention_config", "efficient_attention_config"), r, o);
      out.optional_keys.push_back("model.jet_layers.");  // being inserted into stock Ouro
    }
  }
}

void read_jet_nemotron(const json& c, const Reader& r, HfConfig& out) {
  read_common(c, r, out);
  ModelOptions& o = out.options;
  o.attn_bias = true;  // Qwen2 attention: q, k, v biases, none on o
  const int64_t layers = r.integer(c, "num_hidden_layers", "num_hidden_layers");

  // layer_types -> pattern
  const json& types = r.required(c, "layer_types", "layer_types");
  if (!types.is_array()) r.fail("layer_types", "expected a list, got " + types.dump());
  if (static_cast<int64_t>(types.size()) != layers) {
    r.fail("layer_types", "has " + std::to_string(types.size()) +
                              " entries, num_hidden_layers is " + std::to_string(layers));
  }
  o.pattern.clear();
  for (size_t i = 0; i < types.size(); ++i) {
    const std::string at = "layer_types[" + std::to_string(i) + "]";
    if (!types[i].is_string()) r.fail(at, "expected a string, got " + types[i].dump());
    const std::string t = types[i].get<std::string>();
    if (t == "jet") {
      o.pattern += 'J';
    } else if (t == "attn") {
      o.pattern += 'A';
    } else if (t == "swa") {
      o.pattern += 'S';
    } else {
      r.fail(at, "expected jet, attn or swa, got \"" + t + "\"");
    }
  }

  const bool has_jet = o.pattern.find('J') != std::string::npos;
  const bool has_swa = o.pattern.find('S') != std::string::npos;
  if (!has_jet && !has_swa) return;
  const json& eff = r.object(c, "efficient_attention_config", "efficient_attention_config");
  if (has_swa) {
    const json& swa = r.object(eff, "swa", "efficient_attention_config.swa");
    o.swa_window = r.integer(swa, "window_size", "efficient_attention_config.swa.window_size");
  }
  if (has_jet) read_jet(eff, r, o);
}

}  // namespace

HfConfig parse_hf_config(const std::string& text, const std::string& source) {
  json c;
  try {
    c = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(source + ": not valid JSON: " + e.what());
  }
  const Reader r(source);
  if (!c.is_object()) r.fail("(top level)", "expected an object");
  HfConfig out;
  out.json = text;
  out.family = r.string(c, "model_type", "model_type");
  if (out.family == "jet_nemotron") {
    read_jet_nemotron(c, r, out);
  } else if (out.family == "ouro") {
    read_ouro(c, r, out);
  } else {
    r.fail("model_type",
           "\"" + out.family + "\" is not a family hypnos loads (jet_nemotron, ouro)");
  }
  try {
    out.options.validate();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(source + ": the architecture it gives is invalid: " + e.what());
  }
  return out;
}

HfConfig read_hf_config(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "config.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  return parse_hf_config(text.str(), path.string());
}

std::string hf_config_json(const std::string& source_json, const ModelOptions& model) {
  const HfConfig source = parse_hf_config(source_json);
  if (source.options.inserted_jet_after == model.inserted_jet_after) return source_json;
  if (!source.options.inserted_jet_after.empty()) {
    throw std::invalid_argument(
        "hf_config_json: the source config.json inserts JetBlocks after other layers than the "
        "model (model.inserted_jet_after)");
  }
  if (source.family != "ouro") {
    throw std::invalid_argument(
        "hf_config_json: JetBlocks are inserted into Ouro only, the source "
        "config.json is " +
        source.family);
  }
  // ordered_json keeps the source's keys in their order; the new ones follow.
  nlohmann::ordered_json c = nlohmann::ordered_json::parse(source_json);
  c["jet_layers_after"] = model.inserted_jet_after;
  const int64_t k = model.resolved_head_dim_k(), v = model.resolved_head_dim_v();
  // read_jet computes V = trunc(K * expand_v): the smallest double at or above V / K gives V back.
  double expand_v = static_cast<double>(v) / static_cast<double>(k);
  while (static_cast<int64_t>(std::trunc(static_cast<double>(k) * expand_v)) < v) {
    expand_v = std::nextafter(expand_v, 2.0 * expand_v);
  }
  nlohmann::ordered_json jet;
  jet["num_heads"] = model.resolved_ssm_heads();
  jet["head_dim"] = k;
  jet["expand_v"] = expand_v;
  jet["conv_size"] = model.conv_size;
  jet["dconv_generator_reduction"] = model.generator_reduction;
  jet["norm_eps"] = model.resolved_ssm_norm_eps();
  if (!c.contains("efficient_attention_config") || !c["efficient_attention_config"].is_object()) {
    c["efficient_attention_config"] = nlohmann::ordered_json::object();
  }
  c["efficient_attention_config"]["jet"] = jet;
  return c.dump(2) + "\n";
}

ModelOptions pretrained_run_options(const ModelOptions& run) {
  const HfConfig config = read_hf_config(run.from);
  ModelOptions o = config.options;
  o.from = run.from;
  o.ops = run.ops;
  if (!run.inserted_jet_after.empty() && run.inserted_jet_after != o.inserted_jet_after) {
    if (config.family != "ouro" || !o.inserted_jet_after.empty()) {
      throw std::invalid_argument(
          "model.inserted_jet_after: JetBlocks are inserted only into an Ouro checkpoint whose "
          "config.json inserts none (" +
          run.from + "/config.json: model_type " + config.family +
          (o.inserted_jet_after.empty() ? "" : ", jet_layers_after set") + ")");
    }
    o.inserted_jet_after = run.inserted_jet_after;
    o.ssm_heads = run.ssm_heads;
    o.head_dim_k = run.head_dim_k;
    o.head_dim_v = run.head_dim_v;
    o.conv_size = run.conv_size;
    o.generator_reduction = run.generator_reduction;
    o.ssm_norm_eps = run.ssm_norm_eps;
  }
  return o;
}

}  // namespace hypnos::nn
