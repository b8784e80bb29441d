// Names of the gated-delta-rule backends, as written in configs (`model.gdn_backend`).
#include "hypnos/ops/gated_delta_rule.h"

#include <stdexcept>
#include <string>

namespace hypnos::ops {

GdnBackend gdn_backend_from_name(std::string_view name) {
  if (name == "auto") return GdnBackend::kAuto;
  if (name == "reference") return GdnBackend::kReference;
  if (name == "chunked") return GdnBackend::kChunked;
  if (name == "cuda") return GdnBackend::kCuda;
  throw std::invalid_argument("unknown gated delta rule backend '" + std::string(name) +
                              "' (expected auto, reference, chunked or cuda)");
}

std::string_view gdn_backend_name(GdnBackend backend) {
  switch (backend) {
    case GdnBackend::kAuto: return "auto";
    case GdnBackend::kReference: return "reference";
    case GdnBackend::kChunked: return "chunked";
    case GdnBackend::kCuda: return "cuda";
  }
  return "auto";
}

}  // namespace hypnos::ops
