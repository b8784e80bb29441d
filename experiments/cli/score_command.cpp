// `hypnos score DIR --tokens FILE [--out FILE] [--plain] [sleep.key=value ...]`: runs token
// sequences through a run's model or a pretrained checkpoint (a Hugging Face directory) and prints
// the mean negative log-likelihood per token and per window; --out writes the logits.
#include <cstdio>

#include "commands.h"
#include "hypnos/io/safetensors.h"
#include "hypnos/sleep/window_loop.h"
#include "model_source.h"

namespace hypnos::cli {

const CommandSpec& score_spec() {
  static const CommandSpec spec{
      "score",
      "negative log-likelihood (and logits) of token sequences under a run's or a pretrained model",
      {"RUN_OR_MODEL_DIR"},
      {{"--tokens", "FILE",
        "token ids: whitespace-separated, one sequence per line, equal lengths"},
       {"--out", "FILE", "write the logits [B, T, vocab] fp32 as `logits` in a safetensors file"},
       {"--plain", "",
        "the checkpoint's ordinary forward (one causal pass; Ouro's loops) instead "
        "of the sleep window loop"}},
      /*takes_overrides=*/true,
      "RUN_OR_MODEL_DIR is a hypnos run directory (its newest valid checkpoint and its sleep\n"
      "section) or a Hugging Face checkpoint: config.json and model.safetensors (or a sharded\n"
      "index). Without --plain the tokens run through the sleep window loop with the sleep.* keys\n"
      "(sleep.n_passes, sleep.window, sleep.loop_layers, sleep.eviction, ...) on top; every\n"
      "window's wake logits are scored. Token t's loss is that of predicting token t+1; a window's "
      "mean covers the\n"
      "predictions made from its positions. Runs on the CPU in fp32."};
  return spec;
}

int run_score(const ParsedArgs& args) {
  if (!args.has("--tokens")) throw UsageError("--tokens FILE is required");
  ModelSource source = load_model_source(args.positionals[0], args.overrides);
  std::printf("%s\n", source.description.c_str());
  nn::HybridLM& model = source.model;
  const at::Tensor tokens =
      read_token_file(args.get("--tokens"), model->options.vocab_size, "--tokens", 2);
  const sleep::SleepOptions& opts = source.sleep;
  const bool plain = args.has("--plain");
  torch::NoGradGuard no_grad;
  const at::Tensor logits =
      plain ? model->forward(tokens)
            : sleep::run_windows(model, tokens, at::Tensor(),
                                 memory::ModelMemory::empty(model->n_layers()), opts)
                  .logits;
  const int64_t T = tokens.size(1);
  // nll[b, t]: -log p(token t+1 | the logits at t), t < T - 1
  const at::Tensor nll = -at::log_softmax(logits.narrow(1, 0, T - 1).to(at::kDouble), -1)
                              .gather(-1, tokens.narrow(1, 1, T - 1).unsqueeze(-1))
                              .squeeze(-1);
  std::printf("%s, %lld sequences of %lld tokens: mean nll per token %.6f\n",
              plain ? "plain forward"
                    : ("sleep N = " + std::to_string(opts.n_passes) + ", window " +
                       std::to_string(opts.window))
                          .c_str(),
              static_cast<long long>(tokens.size(0)), static_cast<long long>(T),
              nll.mean().item<double>());
  if (!plain) {
    for (int64_t w = 0, s = 0; s < T - 1; ++w, s += opts.window) {
      const int64_t len = std::min(opts.window, T - 1 - s);
      std::printf("  window %lld (positions %lld-%lld): mean nll %.6f\n", static_cast<long long>(w),
                  static_cast<long long>(s), static_cast<long long>(s + len - 1),
                  nll.narrow(1, s, len).mean().item<double>());
    }
  }
  if (args.has("--out")) {
    io::save_safetensors(
        args.get("--out"),
        io::NamedTensors{{"logits", logits.to(at::kFloat).contiguous()}, {"tokens", tokens}});
    std::printf("wrote %s\n", args.get("--out").c_str());
  }
  return 0;
}

}  // namespace hypnos::cli
