// Model weights as safetensors files keyed by the HF-style parameter names of HybridLM.
#pragma once
#include <filesystem>
#include <string>

#include "hypnos/nn/hybrid_lm.h"

namespace hypnos::nn {

/// Writes every parameter (name -> tensor, as named_parameters() lists them) to `path`.
void save_weights(HybridLM& model, const std::filesystem::path& path);

/// Copies the tensors of `path` into the model's parameters (onto each parameter's device). Every
/// name, shape and dtype must match first (io::check_tensors_match: another dtype is refused, never
/// cast); else throws std::runtime_error naming the file and the tensor at fault.
void load_weights(HybridLM& model, const std::filesystem::path& path);

/// SHA-256 (lowercase hex) of every parameter's name, dtype, shape and bytes, in parameter order:
/// the identity of a model's weights, whatever device they are on.
std::string weights_sha256(const HybridLM& model);

/// The model's architecture as YAML (the model.* keys), less the choices that do not change what
/// it computes (the gated-delta-rule backend, model.from): two models with equal texts run the same
/// layers.
std::string architecture_yaml(const ModelOptions& options);

}  // namespace hypnos::nn
