// `hypnos_bench layers`: times each fused layer kernel next to the ATen composition it replaces, on
// the same GPU in the same run, at the shapes of a sleep-training step of the Rule 110 paper model.
#pragma once
#include <map>
#include <string>

namespace hypnos::bench {

/// Prints, per op (GatedDeltaNet conv + SiLU, JetBlock dynamic conv, q/k L2 norm, gates, gated
/// output norm, RoPE, SwiGLU gate, RMSNorm), forward and forward+backward medians (CUDA events,
/// --reps timed runs after warm-up) of the fused kernel and of the composition, and their ratio.
/// bf16 under CUDA autocast as in training (RMSNorm on the fp32 residual stream). Returns 0, or 1
/// without a CUDA device.
int run_layers_bench(const std::map<std::string, std::string>& flags);

}  // namespace hypnos::bench
