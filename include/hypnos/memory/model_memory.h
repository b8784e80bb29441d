// The memory a hybrid model threads through windows: per layer a retained KV block (attention), a
// fast-weight state S and a short-conv cache (GDN / Jet). A plain value passed into forward and
// returned by it (docs/contributing.md habit 2); only the window loop (sleep/) decides what
// survives a boundary.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hypnos/config/fields.h"

namespace hypnos::memory {

/// What survives a window boundary (docs/design.md 1.5).
enum class Eviction {
  kHard,     ///< only S crosses the boundary; KV and short-conv caches are cleared
  kSliding,  ///< also the last L-1 tokens' keys/values (of the last pass) and the short-conv caches
};

/// One layer's memory. An undefined tensor means "empty" (zeros for S, no retained tokens).
struct LayerMemory {
  at::Tensor key;    ///< attention: retained keys before RoPE, [B, H, R, K] (R tokens)
  at::Tensor value;  ///< attention: retained values, [B, H, R, V]
  at::Tensor state;  ///< GDN / Jet: S, [B, H, K, V], fp32 (double for double models)
  at::Tensor conv;   ///< GDN / Jet: inputs of the last conv_size-1 tokens, [B, conv_size-1, C]

  /// Retained attention tokens (0 when none).
  int64_t retained() const { return key.defined() ? key.size(2) : 0; }
};

/// The whole model's memory: one LayerMemory per block, in block order.
struct ModelMemory {
  std::vector<LayerMemory> layers;

  /// All layers empty: the state at the start of a sequence (S = 0, no caches).
  static ModelMemory empty(int64_t n_layers);

  /// Every defined tensor as ("layers.<i>.<key|value|state|conv>", tensor), in layer order: the
  /// names used in memory files and by the window-recompute autograd function.
  std::vector<std::pair<std::string, at::Tensor>> named_tensors() const;
  /// Inverse of named_tensors(); throws naming an unknown or out-of-range entry.
  static ModelMemory from_named(int64_t n_layers,
                                const std::vector<std::pair<std::string, at::Tensor>>& named);

  /// Same memory with every tensor detached from the autograd graph (BPTT truncation).
  ModelMemory detached() const;
};

/// The memory the next window starts from, given what the last pass of this window wrote
/// (`written`: for attention, the keys/values the pass attended over, retained + current).
/// hard: only S. sliding: S, the last `window - 1` keys/values, and the short-conv caches.
ModelMemory evict(const ModelMemory& written, Eviction eviction, int64_t window);

/// Row by row (the batch axis): `if_true`'s tensors where rows[b], `if_false`'s elsewhere. Both
/// memories must hold the same slots with the same shapes; rows: [B] bool on their device.
ModelMemory select_rows(const at::Tensor& rows, const ModelMemory& if_true,
                        const ModelMemory& if_false);

}  // namespace hypnos::memory

template <>
struct hypnos::config::EnumNames<hypnos::memory::Eviction> {
  static constexpr std::array<std::string_view, 2> names{"hard", "sliding"};
};
