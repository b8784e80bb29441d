// Checkpoint directories in the Hugging Face layout: config.json plus model.safetensors, or shards
// listed by model.safetensors.index.json. Loading builds the model config.json describes and
// copies every tensor into it, one tensor at a time (never a second full copy in host memory),
// converting bf16 / fp16 / fp32 / fp64 to each parameter's dtype; saving writes the same layout
// back, so a fine-tuned model can be read by the upstream code.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "hypnos/nn/hf_config.h"
#include "hypnos/nn/hybrid_lm.h"

namespace hypnos::nn {

/// What a load found, name by name. A load succeeds only when missing, unexpected, mismatched and
/// bad_dtype are all empty; `absent_allowed` lists the gaps the family declares (a tied
/// lm_head.weight the files do not hold) and `tied_checked` a tied lm_head.weight that they do hold
/// (accepted when equal to the embedding).
struct LoadReport {
  std::filesystem::path dir;
  std::vector<std::filesystem::path> files;  ///< the safetensors files read, in order
  int64_t loaded = 0;                        ///< tensors copied into parameters
  std::vector<std::string> missing;          ///< parameters no file holds
  std::vector<std::string> unexpected;       ///< tensors no parameter takes
  std::vector<std::string> mismatched;       ///< "name: file [a, b], model [c, d]"
  std::vector<std::string> bad_dtype;        ///< "name: I64" (not a floating-point dtype)
  std::vector<std::string> absent_allowed;
  std::vector<std::string> tied_checked;

  bool ok() const {
    return missing.empty() && unexpected.empty() && mismatched.empty() && bad_dtype.empty();
  }
  /// A few lines: the directory, files, counts, and every name of each list.
  std::string text() const;
};

/// The checkpoint files of `dir`: the shards named by model.safetensors.index.json when it exists,
/// else model.safetensors. Throws std::runtime_error naming what is missing or malformed.
std::vector<std::filesystem::path> hf_checkpoint_files(const std::filesystem::path& dir);

/// Copies the checkpoint in `dir` into `model` (whose parameter names must be the checkpoint's:
/// ParameterNames::kHf). Compares every name and shape first and copies nothing unless they all
/// match; then throws std::runtime_error holding the report's text. `optional_keys`: the names the
/// family allows to be absent (HfConfig::optional_keys; one ending in '.' is a prefix). A JetBlock
/// inserted into Ouro that the checkpoint lacks entirely keeps its fresh initialisation with
/// o_proj zeroed, so that the model computes what the checkpoint did; one it holds only in part
/// is an error.
LoadReport load_hf_weights(HybridLM& model, const std::filesystem::path& dir,
                           const std::vector<std::string>& optional_keys = {});

/// HybridLM(options) with every parameter created in `dtype` (the default dtype is `dtype` while
/// the modules are built): a 2B model in bf16 never exists in fp32 first, so building and loading
/// it needs about one copy of its weights in host memory.
HybridLM build_in_dtype(const ModelOptions& options, at::ScalarType dtype);

/// A model built from `dir`/config.json with its weights loaded, and the load's report.
struct PretrainedModel {
  HfConfig config;
  HybridLM model{nullptr};
  LoadReport report;
};

/// Builds the model `dir`/config.json describes (parameters created in `dtype`, build_in_dtype, on
/// the CPU; the gated delta rule backend `backend`) and loads its weights tensor by tensor. Throws
/// on any config error or load mismatch.
PretrainedModel load_pretrained(const std::filesystem::path& dir, at::ScalarType dtype = at::kFloat,
                                ops::GdnBackend backend = ops::GdnBackend::kAuto);

/// Writes `model`'s parameters to `dir` in the Hugging Face layout with the config.json that
/// describes the model (hf_config_json of `config_json`, the config.json it was built from:
/// verbatim, or with the JetBlocks a run inserted into Ouro added): model.safetensors when shards
/// == 1, else model-0000k-of-0000n.safetensors and model.safetensors.index.json. `dtype` undefined
/// keeps each parameter's dtype (a bit-exact round trip), otherwise the tensors are converted (e.g.
/// bf16 for release).
void save_hf_checkpoint(HybridLM& model, const std::filesystem::path& dir,
                        const std::string& config_json, int64_t shards = 1,
                        at::ScalarType dtype = at::ScalarType::Undefined);

}  // namespace hypnos::nn
