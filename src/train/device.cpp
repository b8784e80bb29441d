// run.device -> a device of this machine; asking for CUDA without one is a config error (exit 2).
#include "hypnos/train/device.h"

#include "hypnos/config/error.h"

namespace hypnos::train {

c10::Device resolve_device(Device wanted, int64_t index) {
  const bool cuda = torch::cuda::is_available();
  if (wanted == Device::kCuda && !cuda) {
    throw config::ConfigError("config error: run.device is cuda but no CUDA device is available");
  }
  if (wanted == Device::kCpu || !cuda) return at::kCPU;
  return c10::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace hypnos::train
