// What every token mixer (attention, GatedDeltaNet, JetBlock) returns: its output and the memory it
// wrote in this pass. Which of that memory survives is the window loop's decision, not the mixer's.
#pragma once
#include <ATen/ATen.h>

#include "hypnos/memory/model_memory.h"

namespace hypnos::nn {

struct MixerOutput {
  at::Tensor y;  ///< y: [B, T, D]
  memory::LayerMemory
      written;  ///< attention: retained + current keys/values; SSM: S and conv cache
};

}  // namespace hypnos::nn
