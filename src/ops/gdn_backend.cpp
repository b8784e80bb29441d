// The gated-delta-rule backend: its names as written in configs (`model.gdn_backend`), and the one
// decision of which backend runs a call (ops/gdn_backend_choice.h).
#include <cstdio>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

#include "hypnos/log.h"
#include "hypnos/ops/gated_delta_rule.h"
#include "ops/gdn_backend_choice.h"

namespace hypnos::ops {

GdnBackend gdn_backend_from_name(std::string_view name) {
  const auto& names = config::EnumNames<GdnBackend>::names;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<GdnBackend>(i);
  }
  throw std::invalid_argument("unknown gated delta rule backend '" + std::string(name) +
                              "' (expected auto, reference, chunked or cuda)");
}

std::string_view gdn_backend_name(GdnBackend backend) {
  return config::EnumNames<GdnBackend>::names.at(static_cast<size_t>(backend));
}

std::string describe(const GdnProblem& p) {
  return "B = " + std::to_string(p.batch) + ", H = " + std::to_string(p.heads) +
         ", K = " + std::to_string(p.head_dim_k) + ", V = " + std::to_string(p.head_dim_v) + ", " +
         c10::toString(p.dtype) + (p.on_cuda ? " on CUDA" : " on the CPU") +
         (p.packed ? ", packed (cu_seqlens)" : "");
}

namespace {
std::string kib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f KiB", double(bytes) / 1024.0);
  return text;
}
}  // namespace

std::string cuda_kernels_refuse(const GdnProblem& p, bool cuda_kernels_built) {
  if (!p.on_cuda) return "the inputs are not CUDA tensors";
  if (!cuda_kernels_built) return "hypnos was built without its CUDA kernels (HYPNOS_CUDA)";
  if (p.dtype != c10::ScalarType::BFloat16 && p.dtype != c10::ScalarType::Float) {
    return std::string("the CUDA kernels take bfloat16 or float32, not ") + c10::toString(p.dtype);
  }
  if (p.batch * p.heads > 65535) {
    return "the CUDA kernels take B * H <= 65535 (their grid's y), not " +
           std::to_string(p.batch * p.heads);
  }
  const std::string dims =
      "K = " + std::to_string(p.head_dim_k) + ", V = " + std::to_string(p.head_dim_v);
  if (p.kernel_smem_bytes == 0) {
    return "the CUDA kernels are not built for " + dims +
           " (kernels/gdn_dispatch.cuh lists the (K, V) pairs of each kernel family)";
  }
  if (p.kernel_smem_bytes > p.device_smem_bytes) {
    return "the CUDA kernels for " + dims + " need " + kib(p.kernel_smem_bytes) +
           " of shared memory per block, this device allows " + kib(p.device_smem_bytes);
  }
  return "";
}

GdnBackendChoice choose_gdn_backend(GdnBackend requested, const GdnProblem& problem,
                                    bool cuda_kernels_built) {
  if (requested == GdnBackend::kReference || requested == GdnBackend::kChunked) {
    return {requested, ""};
  }
  const std::string refused = cuda_kernels_refuse(problem, cuda_kernels_built);
  if (requested == GdnBackend::kCuda) {
    if (!refused.empty()) {
      throw std::invalid_argument("gated_delta_rule: backend cuda cannot run " + describe(problem) +
                                  ": " + refused + " (use gdn_backend auto, chunked or reference)");
    }
    return {GdnBackend::kCuda, ""};
  }
  if (refused.empty()) return {GdnBackend::kCuda, ""};
  // A CPU problem takes the chunked form as a matter of course; on a GPU it is worth a line.
  return {GdnBackend::kChunked, problem.on_cuda ? refused : ""};
}

bool log_gdn_fallback_once(const GdnProblem& p, std::string_view reason) {
  static std::mutex mutex;
  static std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int, bool, bool>> seen;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_tuple(p.batch, p.heads, p.head_dim_k, p.head_dim_v,
                                     static_cast<int>(p.dtype), p.on_cuda, p.packed);
    if (!seen.insert(key).second) return false;
  }
  log::warn("gated_delta_rule: gdn_backend auto runs the chunked ATen backend for " + describe(p) +
            ": " + std::string(reason) + " (logged once per shape)");
  return true;
}

}  // namespace hypnos::ops
