// `hypnos export RUN_OR_MODEL_DIR --out DIR [--shards N] [--dtype bf16|fp32]`: writes a run's
// newest valid checkpoint (or a Hugging Face checkpoint, re-sharded or converted) as a Hugging Face
// checkpoint directory that loads back into hypnos, and into transformers for the families it
// knows: config.json, the safetensors weights, and the source directory's other files (tokenizer,
// generation config, remote code).
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "commands.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/nn/hf_config.h"
#include "model_source.h"

namespace hypnos::cli {
namespace fs = std::filesystem;
namespace {

/// Files of a Hugging Face directory that hold weights (replaced by the export, never copied).
bool is_weights_file(const fs::path& file) {
  const std::string name = file.filename().string();
  auto ends_with = [&name](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".safetensors") || ends_with(".safetensors.index.json") || ends_with(".bin") ||
         ends_with(".bin.index.json") || ends_with(".pt") || ends_with(".pth");
}

/// The checkpoint directory the model was built from: the HF directory itself, or a run's
/// model.from. UsageError when there is none (a model trained from scratch has no Hugging Face
/// family to write) or it is gone.
fs::path source_directory(const fs::path& dir, const ModelSource& source) {
  if (fs::exists(dir / "config.json")) return dir;
  const std::string from = source.model->options.from;
  if (from.empty()) {
    throw UsageError(dir.string() +
                     " was trained from scratch (no model.from): only models of a pretrained "
                     "family (Jet-Nemotron, Ouro) have a Hugging Face layout; its checkpoints are "
                     "safetensors files already");
  }
  if (!fs::exists(fs::path(from) / "config.json")) {
    throw UsageError("the run's model.from = " + from +
                     " has no config.json any more: the export writes that config.json (with the "
                     "run's inserted JetBlocks) beside the weights, so it needs the directory");
  }
  return from;
}

at::ScalarType export_dtype(const std::string& name) {
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp32") return at::kFloat;
  throw UsageError("--dtype " + name + ": expected bf16 or fp32");
}

}  // namespace

const CommandSpec& export_spec() {
  static const CommandSpec spec{
      "export",
      "write a run's newest checkpoint as a Hugging Face checkpoint directory",
      {"RUN_OR_MODEL_DIR"},
      {{"--out", "DIR", "the directory to write (must not exist yet)"},
       {"--shards", "N", "safetensors files to split the weights into (default 1)"},
       {"--dtype", "bf16|fp32", "the weights' dtype on disk (default bf16)"}},
      /*takes_overrides=*/false,
      "RUN_OR_MODEL_DIR is a hypnos run started from a pretrained checkpoint (model.from) or a\n"
      "Hugging Face checkpoint directory. DIR gets the source's config.json (for Ouro with\n"
      "JetBlocks a run inserted, with those JetBlocks added so that it loads back as the same\n"
      "model), the weights (model.safetensors, or N shards and their index), and every other\n"
      "file of the source directory (tokenizer, generation config, remote code). The model's\n"
      "weights are read in fp32 and written in --dtype: a bf16 run exports bit for bit. DIR is\n"
      "written beside itself first and renamed when complete."};
  return spec;
}

int run_export(const ParsedArgs& args) {
  if (!args.has("--out")) throw UsageError("--out DIR is required");
  const fs::path out = args.get("--out");
  if (fs::exists(out)) throw UsageError("--out " + out.string() + " exists already");
  const long long shards = args.get_int("--shards", 1);
  if (shards < 1) throw UsageError("--shards must be at least 1");
  const at::ScalarType dtype = export_dtype(args.get("--dtype", "bf16"));

  const fs::path dir = args.positionals[0];
  ModelSource source = load_model_source(dir, {});
  std::printf("%s\n", source.description.c_str());
  const fs::path from = source_directory(dir, source);
  const std::string config_json = nn::read_hf_config(from).json;

  // Written under a temporary name and renamed whole: an interrupted export leaves no directory
  // that looks complete.
  const fs::path partial = out.string() + ".partial";
  std::error_code ignored;
  fs::remove_all(partial, ignored);
  fs::create_directories(partial);
  nn::save_hf_checkpoint(source.model, partial, config_json, shards, dtype);
  int copied = 0;
  for (const auto& entry : fs::directory_iterator(from)) {
    const fs::path file = entry.path();
    if (!entry.is_regular_file() || file.filename() == "config.json" || is_weights_file(file)) {
      continue;
    }
    fs::copy_file(file, partial / file.filename());
    ++copied;
  }
  fs::rename(partial, out);
  std::printf("wrote %s: config.json, %lld safetensors file%s (%s) and %d file%s of %s\n",
              out.string().c_str(), shards, shards == 1 ? "" : "s",
              dtype == at::kBFloat16 ? "bf16" : "fp32", copied, copied == 1 ? "" : "s",
              from.string().c_str());
  return 0;
}

}  // namespace hypnos::cli
