// Value semantics of ModelMemory and the two eviction policies of docs/design.md 1.5.
#include "hypnos/memory/model_memory.h"

namespace hypnos::memory {
namespace {

constexpr std::array<std::string_view, 4> kSlotNames{"key", "value", "state", "conv"};

std::array<at::Tensor*, 4> slots(LayerMemory& m) {
  return {&m.key, &m.value, &m.state, &m.conv};
}
std::array<const at::Tensor*, 4> slots(const LayerMemory& m) {
  return {&m.key, &m.value, &m.state, &m.conv};
}

}  // namespace

ModelMemory ModelMemory::empty(int64_t n_layers) {
  ModelMemory m;
  m.layers.resize(static_cast<size_t>(n_layers));
  return m;
}

std::vector<std::pair<std::string, at::Tensor>> ModelMemory::named_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto s = slots(layers[i]);
    for (size_t j = 0; j < s.size(); ++j) {
      if (s[j]->defined()) {
        out.emplace_back("layers." + std::to_string(i) + "." + std::string(kSlotNames[j]), *s[j]);
      }
    }
  }
  return out;
}

ModelMemory ModelMemory::from_named(int64_t n_layers,
                                    const std::vector<std::pair<std::string, at::Tensor>>& named) {
  ModelMemory m = empty(n_layers);
  for (const auto& [name, tensor] : named) {
    const std::string prefix = "layers.";
    const auto dot = name.find('.', prefix.size());
    if (name.rfind(prefix, 0) != 0 || dot == std::string::npos) {
      throw std::invalid_argument("memory entry '" + name +
                                  "': expected layers.<index>.<key|value|state|conv>");
    }
    int64_t index = -1;
    try {
      index = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
    } catch (const std::exception&) {
    }
    if (index < 0 || index >= n_layers) {
      throw std::invalid_argument("memory entry '" + name + "': layer index out of range [0, " +
                                  std::to_string(n_layers) + ")");
    }
    const std::string slot = name.substr(dot + 1);
    auto s = slots(m.layers[static_cast<size_t>(index)]);
    const auto it = std::find(kSlotNames.begin(), kSlotNames.end(), slot);
    if (it == kSlotNames.end()) {
      throw std::invalid_argument("memory entry '" + name +
                                  "': unknown slot (expected key, value, state or conv)");
    }
    *s[static_cast<size_t>(it - kSlotNames.begin())] = tensor;
  }
  return m;
}

ModelMemory ModelMemory::detached() const {
  ModelMemory m = *this;
  for (auto& layer : m.layers) {
    for (at::Tensor* t : slots(layer)) {
      if (t->defined()) *t = t->detach();
    }
  }
  return m;
}

ModelMemory evict(const ModelMemory& written, Eviction eviction, int64_t window) {
  ModelMemory next = ModelMemory::empty(static_cast<int64_t>(written.layers.size()));
  for (size_t i = 0; i < written.layers.size(); ++i) {
    const LayerMemory& w = written.layers[i];
    LayerMemory& n = next.layers[i];
    n.state = w.state;
    if (eviction == Eviction::kHard) continue;
    // Sliding: a query may look L-1 tokens back, so those are all the next window can need.
    const int64_t keep = std::min<int64_t>(window - 1, w.retained());
    if (keep > 0) {
      n.key = w.key.narrow(2, w.key.size(2) - keep, keep);
      n.value = w.value.narrow(2, w.value.size(2) - keep, keep);
    }
    n.conv = w.conv;
  }
  return next;
}

ModelMemory select_rows(const at::Tensor& rows, const ModelMemory& if_true,
                        const ModelMemory& if_false) {
  TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == at::kBool,
              "select_rows: rows must be a bool vector [B], got ", rows.sizes(), " ",
              rows.scalar_type());
  TORCH_CHECK(if_true.layers.size() == if_false.layers.size(), "select_rows: memories of ",
              if_true.layers.size(), " and ", if_false.layers.size(), " layers");
  ModelMemory out = if_false;
  for (size_t i = 0; i < out.layers.size(); ++i) {
    const auto from = slots(if_true.layers[i]);
    auto into = slots(out.layers[i]);
    for (size_t s = 0; s < into.size(); ++s) {
      const at::Tensor& a = *from[s];
      at::Tensor& b = *into[s];
      TORCH_CHECK(a.defined() == b.defined() && (!a.defined() || a.sizes() == b.sizes()),
                  "select_rows: layer ", i, " ", kSlotNames[s], " differs between the memories (",
                  a.defined() ? c10::str(a.sizes()) : "empty", " vs ",
                  b.defined() ? c10::str(b.sizes()) : "empty", ")");
      if (!a.defined()) continue;
      TORCH_CHECK(a.size(0) == rows.size(0), "select_rows: layer ", i, " ", kSlotNames[s], " has ",
                  a.size(0), " rows, the selector ", rows.size(0));
      std::vector<int64_t> shape(static_cast<size_t>(a.dim()), 1);
      shape[0] = rows.size(0);
      b = at::where(rows.view(shape), a, b);
    }
  }
  return out;
}

}  // namespace hypnos::memory
