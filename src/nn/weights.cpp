// save_weights / load_weights: parameters to and from safetensors, refusing partial matches.
#include "hypnos/nn/weights.h"

#include "hypnos/io/safetensors.h"

namespace hypnos::nn {

void save_weights(HybridLM& model, const std::filesystem::path& path) {
  io::NamedTensors tensors;
  for (const auto& p : model->named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
  io::save_safetensors(path, tensors,
                       {{"format", "hypnos.HybridLM"}, {"pattern", model->options.pattern}});
}

void load_weights(HybridLM& model, const std::filesystem::path& path) {
  const auto file = io::load_safetensors(path).as_map();
  auto params = model->named_parameters();
  auto fail = [&](const std::string& what) {
    throw std::runtime_error("load_weights(" + path.string() + "): " + what);
  };
  if (file.size() != params.size()) {
    for (const auto& [name, t] : file) {
      if (params.find(name) == nullptr) fail("unexpected tensor '" + name + "'");
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    const auto it = file.find(p.key());
    if (it == file.end()) fail("missing tensor '" + p.key() + "'");
    if (it->second.sizes() != p.value().sizes()) {
      std::ostringstream msg;
      msg << "tensor '" << p.key() << "' has shape " << it->second.sizes() << ", the model expects "
          << p.value().sizes();
      fail(msg.str());
    }
    p.value().copy_(it->second);
  }
}

}  // namespace hypnos::nn
