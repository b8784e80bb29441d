// Model weights as safetensors files keyed by the HF-style parameter names of HybridLM.
#pragma once
#include <filesystem>

#include "hypnos/nn/hybrid_lm.h"

namespace hypnos::nn {

/// Writes every parameter (name -> tensor, as named_parameters() lists them) to `path`.
void save_weights(HybridLM& model, const std::filesystem::path& path);

/// Copies the tensors of `path` into the model's parameters (converted to each parameter's dtype
/// and device). Throws std::runtime_error naming the file and the first missing, unexpected or
/// mis-shaped tensor.
void load_weights(HybridLM& model, const std::filesystem::path& path);

}  // namespace hypnos::nn
