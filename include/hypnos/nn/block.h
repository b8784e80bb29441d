// Block: pre-norm residual mixer (attention, GatedDeltaNet or JetBlock) followed by a pre-norm MLP.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "hypnos/nn/attention.h"
#include "hypnos/nn/gated_delta_net.h"
#include "hypnos/nn/jet_block.h"
#include "hypnos/nn/mixer.h"
#include "hypnos/nn/mlp.h"
#include "hypnos/nn/model_options.h"
#include "hypnos/nn/rms_norm.h"

namespace hypnos::nn {

struct BlockOptions {
  BlockOptions(ModelOptions model, char kind) : model_(std::move(model)), kind_(kind) {}
  TORCH_ARG(ModelOptions, model);
  /// 'A' attention, 'S' sliding-window attention, 'G' GatedDeltaNet, 'J' JetBlock.
  TORCH_ARG(char, kind);
};

/// x + mixer(mixer_norm(x)), then + mlp(mlp_norm(x)). Parameters: mixer_norm.weight, mixer.*,
/// mlp_norm.weight, mlp.* (with ParameterNames::kHf: input_layernorm.weight, self_attn.*,
/// post_attention_layernorm.weight, mlp.*).
class BlockImpl : public torch::nn::Cloneable<BlockImpl> {
 public:
  explicit BlockImpl(BlockOptions options);
  void reset() override;

  /// x: [B, T, D]. `span` limits attention lookback (see AttentionImpl::forward); SSM mixers ignore
  /// it. Returns the block output [B, T, D] and the mixer's written memory.
  MixerOutput forward(const at::Tensor& x, const memory::LayerMemory& memory, int64_t span = 0);

  bool is_attention() const { return options.kind() == 'A' || options.kind() == 'S'; }

  BlockOptions options;
  RMSNorm mixer_norm{nullptr}, mlp_norm{nullptr};
  Attention attention{nullptr};  // exactly one of the three mixers is set
  GatedDeltaNet gdn{nullptr};
  JetBlock jet{nullptr};
  GeluMlp gelu_mlp{nullptr};  // exactly one of the two MLPs is set
  SwiGluMlp swiglu_mlp{nullptr};
};
TORCH_MODULE(Block);

}  // namespace hypnos::nn
