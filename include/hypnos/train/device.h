// The device a run.device setting names on this machine, one rule for `hypnos train` and `eval`.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>

#include "hypnos/train/train_options.h"

namespace hypnos::train {

/// auto: CUDA device `index` when CUDA is available, else the CPU; cpu: the CPU; cuda: CUDA device
/// `index`, and config::ConfigError naming run.device when this machine has no CUDA device.
c10::Device resolve_device(Device wanted, int64_t index = 0);

}  // namespace hypnos::train
