// HybridLM: embedding, a stack of Blocks built from a layer pattern ("AGAG"), final RMSNorm, head.
// It exposes its three stages separately because the window loop (sleep/) runs the blocks several
// times per window while embedding once and reading logits once.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <utility>

#include "hypnos/memory/model_memory.h"
#include "hypnos/nn/block.h"
#include "hypnos/nn/model_options.h"
#include "hypnos/nn/rms_norm.h"

namespace hypnos::nn {

/// The blocks of `options` in execution order: the pattern's, each followed by the JetBlocks
/// (without MLP) inserted after it.
std::vector<Block> make_blocks(const ModelOptions& options);

/// The `model.` part of the Hugging Face layout (ParameterNames::kHf): embed_tokens, layers (the
/// pattern's blocks), norm, and for Ouro jet_layers (inserted JetBlocks) and early_exit_gate
/// (kept, never trained: requires_grad false). HybridLM owns one when its options ask for that
/// layout.
class DecoderImpl : public torch::nn::Cloneable<DecoderImpl> {
 public:
  explicit DecoderImpl(ModelOptions options);
  void reset() override;
  ModelOptions options;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr}, jet_layers{nullptr};
  RMSNorm norm{nullptr};
  torch::nn::Linear early_exit_gate{nullptr};
};
TORCH_MODULE(Decoder);

/// Parameter names (HF style; the safetensors keys of saved weights):
///   embed.weight [vocab, D]
///   blocks.<i>.mixer_norm.weight, blocks.<i>.mlp_norm.weight [D]
///   blocks.<i>.mixer.{q,k,v,o}_proj.weight                      (attention)
///   blocks.<i>.mixer.{q,k,v,g,a,b,o}_proj.weight, .{q,k,v}_conv.weight, .A_log, .dt_bias,
///     .o_norm.weight                                            (GatedDeltaNet)
///   blocks.<i>.mixer.kernel_down.weight, .kernel_up.{weight,bias} (JetBlock, no q/k/v_conv)
///   blocks.<i>.mlp.{up,down}_proj.weight (gelu) or .{gate,up,down}_proj.weight (swiglu)
///   norm.weight [D], lm_head.weight [vocab, D] (absent with tie_embeddings)
/// With ParameterNames::kHf (pretrained checkpoints) they are the checkpoint's keys:
///   model.embed_tokens.weight, model.layers.<i>.{input_layernorm,post_attention_layernorm}.weight,
///   model.layers.<i>.self_attn.* (as above; JetBlock's generator
///   dynamic_conv1d.kernel_generator.{w1.weight,w2.weight,w2.bias}), model.layers.<i>.mlp.*,
///   model.norm.weight, lm_head.weight (absent with tie_embeddings).
class HybridLMImpl : public torch::nn::Cloneable<HybridLMImpl> {
 public:
  /// Validates `options` (throws std::invalid_argument naming the key).
  explicit HybridLMImpl(ModelOptions options);
  void reset() override;
  /// A clone's embed_tokens / blocks / norm point at its own decoder (kHf layout).
  std::shared_ptr<torch::nn::Module> clone(
      const std::optional<at::Device>& device = std::nullopt) const override;

  /// Blocks in execution order (inserted JetBlocks included).
  int64_t n_layers() const { return options.n_blocks(); }

  /// tokens: [B, T] int64 -> h: [B, T, D]
  at::Tensor embed(const at::Tensor& tokens);

  /// Runs blocks [begin, end) on h: [B, T, D], each reading memory.layers[i] and the result
  /// replacing it (layers outside the range pass through unchanged). `span` limits attention
  /// lookback (0 = all). With loop_norm, a call that runs the last block ends with the final norm
  /// (a pass over the stack closes with it). Returns {h, memory written}.
  std::pair<at::Tensor, memory::ModelMemory> forward_blocks(const at::Tensor& h,
                                                            const memory::ModelMemory& memory,
                                                            int64_t begin, int64_t end,
                                                            int64_t span = 0);

  /// h: [B, T, D] -> logits: [B, T, vocab] (through lm_head, or the embedding when tied; the
  /// final norm first unless loop_norm already applied it)
  at::Tensor logits(const at::Tensor& h);

  /// The head's weight [vocab, D]: lm_head's, or the embedding matrix when tied.
  const at::Tensor& head_weight() const;

  /// The ordinary forward over one window from empty memory: tokens [B, T] -> logits [B, T,
  /// vocab]. ut_steps passes over the stack (one for all but Ouro), each from empty memory.
  at::Tensor forward(const at::Tensor& tokens);

  ModelOptions options;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  /// Block i of `blocks` (read from the list each time: a clone replaces the list's modules).
  BlockImpl& block(int64_t i);
  RMSNorm norm{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null with tie_embeddings
  Decoder decoder{nullptr};            // the `model.` module of the kHf layout, else null

 private:
  void bind_decoder();
};
TORCH_MODULE(HybridLM);

}  // namespace hypnos::nn
