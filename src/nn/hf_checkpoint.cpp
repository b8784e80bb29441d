// Hugging Face checkpoint directories: import with a load report, export in the same layout.
#include "hypnos/nn/hf_checkpoint.h"

#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "hypnos/io/durable.h"
#include "hypnos/io/safetensors.h"

namespace hypnos::nn {
namespace {

namespace fs = std::filesystem;

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

/// Where one checkpoint tensor lies: its file, its header entry, and the file's data offset.
struct Located {
  fs::path file;
  io::SafetensorsEntry entry;
  uint64_t data_start = 0;  // 8 + header length: the byte the entry's offsets count from
};

uint64_t header_length(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  unsigned char b[8];
  if (!in.read(reinterpret_cast<char*>(b), 8)) {
    throw std::runtime_error(file.string() + ": cannot read the safetensors header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | b[i];  // little-endian
  return n;
}

/// Reads one tensor's bytes from its file into a fresh CPU tensor of the file's dtype (the only
/// host copy of it: the caller converts it into the parameter and drops it).
at::Tensor read_tensor(std::ifstream& in, const Located& at) {
  at::Tensor t = at::empty(at.entry.shape, at::TensorOptions().dtype(at.entry.dtype));
  const uint64_t bytes = at.entry.end - at.entry.begin;
  if (bytes != t.nbytes()) {
    throw std::runtime_error(at.file.string() + ": tensor '" + at.entry.name + "' holds " +
                             std::to_string(bytes) + " bytes, its shape and dtype need " +
                             std::to_string(t.nbytes()));
  }
  in.seekg(static_cast<std::streamoff>(at.data_start + at.entry.begin));
  if (!in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes))) {
    throw std::runtime_error(at.file.string() + ": cannot read tensor '" + at.entry.name + "'");
  }
  return t;
}

void list(std::ostringstream& s, const char* what, const std::vector<std::string>& names) {
  if (names.empty()) return;
  s << "\n  " << what << " (" << names.size() << "):";
  for (const auto& n : names) s << "\n    " << n;
}

}  // namespace

std::string LoadReport::text() const {
  std::ostringstream s;
  s << "load report for " << dir.string() << ": " << (ok() ? "ok" : "FAILED") << ", " << loaded
    << " tensors loaded from " << files.size() << " file(s)";
  for (const auto& f : files) s << "\n  file " << f.filename().string();
  list(s, "missing", missing);
  list(s, "unexpected", unexpected);
  list(s, "shape mismatch", mismatched);
  list(s, "not a floating-point dtype", bad_dtype);
  list(s, "absent, allowed by the family", absent_allowed);
  list(s, "tied to the embedding, checked equal", tied_checked);
  return s.str();
}

std::vector<fs::path> hf_checkpoint_files(const fs::path& dir) {
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const std::exception& e) {
      throw std::runtime_error(index.string() + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      throw std::runtime_error(index.string() + ": weight_map: missing or not an object");
    }
    std::set<std::string> names;
    for (const auto& [key, file] : j["weight_map"].items()) {
      if (!file.is_string()) {
        throw std::runtime_error(index.string() + ": weight_map." + key + ": expected a file name");
      }
      names.insert(file.get<std::string>());
    }
    std::vector<fs::path> files;
    for (const auto& n : names) {
      if (n.find('/') != std::string::npos || n == ".." || n.empty()) {
        throw std::runtime_error(index.string() + ": shard name '" + n +
                                 "' is not a plain file name");
      }
      if (!fs::exists(dir / n)) {
        throw std::runtime_error(index.string() + ": shard " + n + " does not exist in " +
                                 dir.string());
      }
      files.push_back(dir / n);
    }
    return files;
  }
  const fs::path single = dir / "model.safetensors";
  if (!fs::exists(single)) {
    throw std::runtime_error(dir.string() +
                             ": neither model.safetensors nor model.safetensors.index.json");
  }
  return {single};
}

LoadReport load_hf_weights(HybridLM& model, const fs::path& dir,
                           const std::vector<std::string>& optional_keys) {
  LoadReport report;
  report.dir = dir;
  report.files = hf_checkpoint_files(dir);

  // Every tensor of every file, by name (headers only: no tensor data is read yet).
  std::map<std::string, Located> found;
  for (const auto& file : report.files) {
    const uint64_t start = 8 + header_length(file);
    for (auto& e : io::read_safetensors_header(file)) {
      const std::string name = e.name;
      if (found.count(name)) {
        throw std::runtime_error(dir.string() + ": tensor '" + name + "' is in both " +
                                 found[name].file.filename().string() + " and " +
                                 file.filename().string());
      }
      found[name] = Located{file, std::move(e), start};
    }
  }

  auto params = model->named_parameters();
  const std::set<std::string> optional(optional_keys.begin(), optional_keys.end());
  // A tied head has no lm_head parameter; a file may still hold the matrix (then it must equal
  // the embedding, checked after the copy).
  const bool tied = model->options.tie_embeddings;
  std::vector<std::string> tied_in_file;
  for (const auto& [name, at] : found) {
    if (params.find(name) != nullptr) continue;
    if (tied && name == "lm_head.weight") {
      tied_in_file.push_back(name);
    } else {
      report.unexpected.push_back(name);
    }
  }
  auto is_optional = [&](const std::string& name) {
    for (const auto& o : optional) {
      if (o == name || (!o.empty() && o.back() == '.' && name.rfind(o, 0) == 0)) return true;
    }
    return false;
  };
  // An inserted Ouro JetBlock (model.jet_layers.<k>.) may be absent as a whole, never in part.
  std::map<std::string, std::pair<int, int>> inserted;  // prefix -> (present, absent)
  for (const auto& p : params) {
    if (p.key().rfind("model.jet_layers.", 0) != 0) continue;
    const std::string prefix = p.key().substr(0, p.key().find('.', 17) + 1);
    (found.count(p.key()) ? inserted[prefix].first : inserted[prefix].second) += 1;
  }
  for (const auto& p : params) {
    const auto it = found.find(p.key());
    if (it == found.end()) {
      bool allowed = is_optional(p.key());
      if (p.key().rfind("model.jet_layers.", 0) == 0) {  // being inserted (perhaps by the run)
        allowed = inserted[p.key().substr(0, p.key().find('.', 17) + 1)].first == 0;
      }
      (allowed ? report.absent_allowed : report.missing).push_back(p.key());
      continue;
    }
    const io::SafetensorsEntry& e = it->second.entry;
    if (!at::isFloatingType(e.dtype)) {
      report.bad_dtype.push_back(p.key() + ": " + std::string(io::safetensors_dtype_name(e.dtype)));
    } else if (at::IntArrayRef(e.shape) != p.value().sizes()) {
      report.mismatched.push_back(p.key() + ": file " + shape_text(e.shape) + ", model " +
                                  shape_text(p.value().sizes()));
    }
  }
  if (tied && !found.count("lm_head.weight")) report.absent_allowed.push_back("lm_head.weight");
  if (!report.ok()) throw std::runtime_error(report.text());

  // Copy one tensor at a time, file by file in data order (sequential reads).
  torch::NoGradGuard no_grad;
  std::vector<std::pair<const Located*, at::Tensor>> order;
  for (auto& p : params) {
    if (found.count(p.key())) order.emplace_back(&found.at(p.key()), p.value());
  }
  // Inserted JetBlocks the checkpoint lacks start as no-ops on the residual stream (o_proj = 0,
  // the rest as initialised), so the model first computes what the checkpoint does.
  for (const auto& [prefix, counts] : inserted) {
    if (counts.first == 0) params[prefix + "self_attn.o_proj.weight"].zero_();
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first->file != b.first->file ? a.first->file < b.first->file
                                          : a.first->entry.begin < b.first->entry.begin;
  });
  fs::path open_file;
  std::ifstream in;
  for (auto& [at, param] : order) {
    if (at->file != open_file) {
      in = std::ifstream(at->file, std::ios::binary);
      if (!in) throw std::runtime_error("cannot open " + at->file.string());
      open_file = at->file;
    }
    param.copy_(read_tensor(in, *at));
    ++report.loaded;
  }
  for (const auto& name : tied_in_file) {
    const Located& at = found.at(name);
    std::ifstream file(at.file, std::ios::binary);
    const at::Tensor head = read_tensor(file, at);
    const at::Tensor& embed = model->embed_tokens->weight;
    if (head.sizes() != embed.sizes() ||
        !at::equal(head.to(embed.scalar_type()), embed.detach().cpu())) {
      report.mismatched.push_back(name + ": tied to the embedding, but the file's differs");
      throw std::runtime_error(report.text());
    }
    report.tied_checked.push_back(name);
  }
  return report;
}

HybridLM build_in_dtype(const ModelOptions& options, at::ScalarType dtype) {
  // Modules create their parameters in the default dtype; it is process-wide, so it is restored
  // however the build ends.
  struct DefaultDtype {
    caffe2::TypeMeta saved = at::get_default_dtype();
    explicit DefaultDtype(at::ScalarType t) {
      at::set_default_dtype(caffe2::TypeMeta::fromScalarType(t));
    }
    ~DefaultDtype() { at::set_default_dtype(saved); }
  };
  HybridLM model{nullptr};
  {
    const DefaultDtype scope(dtype);
    model = HybridLM(options);
  }
  model->to(dtype);  // any tensor created with an explicit dtype
  return model;
}

PretrainedModel load_pretrained(const fs::path& dir, at::ScalarType dtype,
                                ops::GdnBackend backend) {
  PretrainedModel out;
  out.config = read_hf_config(dir);
  ModelOptions options = out.config.options;
  options.ops.gdn_backend = backend;
  out.model = build_in_dtype(options, dtype);
  out.report = load_hf_weights(out.model, dir, out.config.optional_keys);
  return out;
}

void save_hf_checkpoint(HybridLM& model, const fs::path& dir, const std::string& config_json,
                        int64_t shards, at::ScalarType dtype) {
  if (shards < 1) throw std::invalid_argument("save_hf_checkpoint: shards must be >= 1");
  fs::create_directories(dir);
  io::write_file_atomic(dir / "config.json", hf_config_json(config_json, model->options));
  io::NamedTensors all;
  for (const auto& p : model->named_parameters()) {
    at::Tensor t = p.value().detach();
    all.emplace_back(p.key(), dtype == at::ScalarType::Undefined ? t : t.to(dtype));
  }
  const io::TensorMetadata meta{{"format", "pt"}};
  if (shards == 1) {
    io::save_safetensors(dir / "model.safetensors", all, meta);
    return;
  }
  // Contiguous runs of parameters per shard, in parameter order (a layer's tensors stay together).
  nlohmann::json index;
  uint64_t total = 0;
  const size_t per = (all.size() + shards - 1) / static_cast<size_t>(shards);
  for (int64_t s = 0; s < shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05lld-of-%05lld.safetensors",
                  static_cast<long long>(s + 1), static_cast<long long>(shards));
    io::NamedTensors part;
    for (size_t i = s * per; i < std::min(all.size(), (s + 1) * per); ++i) {
      part.push_back(all[i]);
      index["weight_map"][all[i].first] = name;
      total += all[i].second.nbytes();
    }
    io::save_safetensors(dir / name, part, meta);
  }
  index["metadata"]["total_size"] = total;
  io::write_file_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace hypnos::nn
