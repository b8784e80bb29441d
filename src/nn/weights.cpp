// save_weights / load_weights: parameters to and from safetensors, refusing partial matches.
#include "hypnos/nn/weights.h"

#include "hypnos/config/visitors.h"
#include "hypnos/io/safetensors.h"
#include "hypnos/io/sha256.h"

namespace hypnos::nn {

void save_weights(HybridLM& model, const std::filesystem::path& path) {
  io::NamedTensors tensors;
  for (const auto& p : model->named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
  io::save_safetensors(path, tensors,
                       {{"format", "hypnos.HybridLM"}, {"pattern", model->options.pattern}});
}

void load_weights(HybridLM& model, const std::filesystem::path& path) {
  const io::SafetensorsContents contents = io::load_safetensors(path);
  auto params = model->named_parameters();
  io::NamedTensors expected;
  for (const auto& p : params) expected.emplace_back(p.key(), p.value().detach());
  // Names, shapes and dtypes all match before anything is copied (another dtype is refused, as a
  // checkpoint's is, never cast).
  io::check_tensors_match(contents, expected, "load_weights(" + path.string() + ")");
  const auto file = contents.as_map();
  torch::NoGradGuard no_grad;
  for (auto& p : params) p.value().copy_(file.at(p.key()));
}

std::string weights_sha256(const HybridLM& model) {
  io::Sha256 hash;
  for (const auto& p : model->named_parameters()) {
    const at::Tensor t = p.value().detach().cpu().contiguous();
    // Name, dtype and shape first, each ended by a byte no name holds, so that no two models'
    // streams are the same bytes split differently.
    std::string header = p.key() + '\0' + std::string(c10::toString(t.scalar_type())) + '\0';
    for (int64_t d : t.sizes()) header += std::to_string(d) + ',';
    header += '\0';
    hash.update(header.data(), header.size());
    hash.update(t.data_ptr(), t.nbytes());
  }
  return hash.hex_digest();
}

std::string architecture_yaml(const ModelOptions& options) {
  ModelOptions o = options;
  o.ops = ops::OpsOptions{};  // how the ops compute is not what the layers compute
  o.from.clear();             // where the weights came from is not what the layers compute
  return config::to_yaml(o);
}

}  // namespace hypnos::nn
