// RAII bf16 autocast on CUDA. LibTorch's autocast defaults to fp16 from C++ (docs/design.md 4), so
// the dtype is always set explicitly; on CPU the guard does nothing (CPU runs stay fp32 and bitwise
// reproducible).
#pragma once
#include <ATen/autocast_mode.h>

namespace hypnos::train {

class AutocastGuard {
 public:
  AutocastGuard(bool enabled, const c10::Device& device) : enabled_(enabled && device.is_cuda()) {
    if (!enabled_) return;
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
    at::autocast::clear_cache();
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

}  // namespace hypnos::train
