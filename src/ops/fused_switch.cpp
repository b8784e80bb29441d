// HYPNOS_FUSED_OPS, read once.
#include "ops/fused_switch.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace hypnos::ops::fused {
namespace {

bool read_switch() {
  const char* value = std::getenv("HYPNOS_FUSED_OPS");
  const std::string name = value ? value : "";
  if (name.empty() || name == "1") return true;
  if (name == "0") return false;
  throw std::invalid_argument("HYPNOS_FUSED_OPS is '" + name +
                              "', expected '1' (fused CUDA kernels, the default) or '0' (ATen)");
}

}  // namespace

bool cuda_kernels_enabled() {
  static const bool enabled = read_switch();
  return enabled;
}

bool use_fused_cuda(const at::Tensor& x) {
  return x.is_cuda() && x.numel() > 0 && cuda_kernels_enabled();
}

}  // namespace hypnos::ops::fused
