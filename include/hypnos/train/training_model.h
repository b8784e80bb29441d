// The model a run trains, built with its parameters in train.param_dtype (docs/design.md 2.2):
// the trainer, `hypnos eval` and the commands that read a run directory build it the same way, so
// that a checkpoint's weights always fit the model they are loaded into.
#pragma once
#include <ATen/core/Tensor.h>

#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/nn/model_options.h"
#include "hypnos/train/train_options.h"

namespace hypnos::train {

/// at::kFloat or at::kBFloat16.
at::ScalarType scalar_type_of(ParamDtype dtype);

/// Whether the model's weights start from its own initialisation or are overwritten next.
enum class InitialWeights {
  kInitialise,  ///< from scratch: a bf16 model is the fp32 initialisation rounded to bf16, the
                ///< start of an fp32 run of the same seed to rounding
  kLoadedNext,  ///< a pretrained checkpoint or a run's checkpoint is copied in next: built in
                ///< the dtype directly (nn::build_in_dtype), never as an fp32 copy first
};

/// HybridLM(options) with its parameters (and floating-point buffers) in `dtype`, on the CPU.
/// fp32 is HybridLM(options) exactly.
nn::HybridLM build_training_model(const nn::ModelOptions& options, ParamDtype dtype,
                                  InitialWeights weights);

}  // namespace hypnos::train
