// The bytes of one rank's training state (weights, gradients, masters, optimizer state), planned
// from the shapes and counted from the live tensors: the start-of-run memory line.
#include <ATen/ATen.h>

#include <array>
#include <cstdio>

#include "hypnos/train/optimizer.h"

namespace hypnos::train {
namespace {

/// n to 3 significant digits in the largest of 1e9, 1e6, 1e3 that it reaches, with that unit's
/// suffix (units: the suffixes of 1e9, 1e6, 1e3 and 1).
std::string format_scaled(int64_t n, const std::array<const char*, 4>& units) {
  const double x = static_cast<double>(n);
  char buf[32];
  int unit = 0;
  for (const double scale : {1e9, 1e6, 1e3}) {
    if (x >= scale) {
      std::snprintf(buf, sizeof(buf), "%.3g%s", x / scale, units[unit]);
      return buf;
    }
    ++unit;
  }
  std::snprintf(buf, sizeof(buf), "%lld%s", static_cast<long long>(n), units[3]);
  return buf;
}

std::string format_bytes(int64_t bytes) {
  return format_scaled(bytes, {" GB", " MB", " kB", " B"});
}

std::string format_count(int64_t n) {
  return format_scaled(n, {"B", "M", "k", ""});
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "fp32";
    case at::kBFloat16:
      return "bf16";
    case at::kHalf:
      return "fp16";
    case at::kDouble:
      return "fp64";
    default:
      return c10::toString(t);
  }
}

std::string weights_dtype(const std::vector<at::Tensor>& params) {
  if (params.empty()) return "none";
  const at::ScalarType first = params.front().scalar_type();
  for (const auto& p : params) {
    if (p.scalar_type() != first) return "mixed";
  }
  return dtype_name(first);
}

}  // namespace

std::string MemoryFootprint::text() const {
  return "parameters " + format_count(parameters) + ": weights " + format_bytes(weights) + " (" +
         weights_dtype + "), gradients " + format_bytes(gradients) + ", masters " +
         format_bytes(masters) + ", optimizer state " + format_bytes(optimizer_state) + ", total " +
         format_bytes(total());
}

MemoryFootprint Optimizer::planned_footprint() const {
  MemoryFootprint f;
  const auto params = parameters();
  f.weights_dtype = weights_dtype(params);
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].numel();
    const int64_t size = static_cast<int64_t>(params[i].element_size());
    const int64_t fp32 = 4;
    f.parameters += n;
    f.weights += n * size;
    f.gradients += n * (with_master_[i] ? fp32 : size);  // a 16-bit parameter's gradient is fp32
    if (!owns(i)) continue;
    const int64_t state_size = with_master_[i] ? fp32 : size;
    if (with_master_[i]) f.masters += n * fp32;
    // Muon: the momentum buffer; AdamW: exp_avg and exp_avg_sq (its step count is no tensor).
    f.optimizer_state += (i < muon_params_.size() ? 1 : 2) * n * state_size;
  }
  return f;
}

MemoryFootprint Optimizer::current_footprint() const {
  MemoryFootprint f;
  const auto params = parameters();
  f.weights_dtype = weights_dtype(params);
  for (size_t i = 0; i < params.size(); ++i) {
    f.parameters += params[i].numel();
    f.weights += static_cast<int64_t>(params[i].nbytes());
    if (params[i].grad().defined()) f.gradients += static_cast<int64_t>(params[i].grad().nbytes());
    if (!with_master_[i]) continue;
    if (master_filled_[i]) f.masters += static_cast<int64_t>(masters_[i].nbytes());
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const auto state = state_of(i);
    for (size_t k = with_master_[i] ? 1 : 0; k < state.size(); ++k) {
      if (state[k].scalar_type() == at::kLong) continue;  // AdamW's step count, made for state_of
      f.optimizer_state += static_cast<int64_t>(state[k].nbytes());
    }
  }
  return f;
}

}  // namespace hypnos::train
