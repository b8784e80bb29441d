// Building the trained model in train.param_dtype.
#include "hypnos/train/training_model.h"

#include "hypnos/nn/hf_checkpoint.h"

namespace hypnos::train {

at::ScalarType scalar_type_of(ParamDtype dtype) {
  return dtype == ParamDtype::kBf16 ? at::kBFloat16 : at::kFloat;
}

nn::HybridLM build_training_model(const nn::ModelOptions& options, ParamDtype dtype,
                                  InitialWeights weights) {
  if (dtype == ParamDtype::kFp32) return nn::HybridLM(options);
  if (weights == InitialWeights::kLoadedNext) {
    return nn::build_in_dtype(options, scalar_type_of(dtype));
  }
  // The fp32 initialisation draws the same random numbers as an fp32 run of this seed; converted
  // tensor by tensor, so the fp32 copy goes as the bf16 one arrives.
  nn::HybridLM model(options);
  model->to(scalar_type_of(dtype));
  return model;
}

}  // namespace hypnos::train
