// `hypnos score MODEL_DIR --tokens FILE [--out FILE] [--plain] [sleep.key=value ...]`: runs token
// sequences through a pretrained checkpoint (a Hugging Face directory) and prints the mean negative
// log-likelihood per token and per window; --out writes the logits.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/io/safetensors.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/sleep/window_loop.h"

namespace hypnos::cli {
namespace {

/// The keys `hypnos score` takes as overrides: the sleep section.
struct ScoreConfig {
  sleep::SleepOptions sleep;
  template <class V>
  void visit(V& v) {
    v.section("sleep", sleep);
  }
};

/// Whitespace-separated token ids, one sequence per line, all of one length: [B, T] int64.
at::Tensor read_token_file(const std::string& path, int64_t vocab) {
  std::ifstream in(path);
  if (!in) throw UsageError("cannot read --tokens " + path);
  std::vector<std::vector<int64_t>> rows;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    std::istringstream s(line);
    std::vector<int64_t> row;
    std::string word;
    while (s >> word) {
      size_t used = 0;
      int64_t id = -1;
      try {
        id = std::stoll(word, &used);
      } catch (const std::exception&) {
      }
      if (used != word.size() || id < 0 || id >= vocab) {
        throw UsageError(path + ":" + std::to_string(n) + ": '" + word +
                         "' is not a token id in [0, " + std::to_string(vocab) + ")");
      }
      row.push_back(id);
    }
    if (row.empty()) continue;
    if (!rows.empty() && row.size() != rows[0].size()) {
      throw UsageError(path + ":" + std::to_string(n) + ": " + std::to_string(row.size()) +
                       " tokens, the first sequence has " + std::to_string(rows[0].size()));
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty() || rows[0].size() < 2) throw UsageError(path + ": no sequence of 2+ tokens");
  at::Tensor t = at::empty(
      {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kLong);
  for (size_t b = 0; b < rows.size(); ++b) {
    for (size_t i = 0; i < rows[b].size(); ++i) t[b][i] = rows[b][i];
  }
  return t;
}

}  // namespace

const CommandSpec& score_spec() {
  static const CommandSpec spec{
      "score",
      "negative log-likelihood (and logits) of token sequences under a pretrained checkpoint",
      {"MODEL_DIR"},
      {{"--tokens", "FILE",
        "token ids: whitespace-separated, one sequence per line, equal lengths"},
       {"--out", "FILE", "write the logits [B, T, vocab] fp32 as `logits` in a safetensors file"},
       {"--plain", "",
        "the checkpoint's ordinary forward (one causal pass; Ouro's loops) instead "
        "of the sleep window loop"}},
      /*takes_overrides=*/true,
      "MODEL_DIR holds config.json and model.safetensors (or a sharded index). Without --plain "
      "the\n"
      "tokens run through the sleep window loop with the sleep.* keys (sleep.n_passes,\n"
      "sleep.window, sleep.loop_layers, sleep.eviction, ...); every window's wake logits are\n"
      "scored. Token t's loss is that of predicting token t+1; a window's mean covers the\n"
      "predictions made from its positions. Runs on the CPU in fp32."};
  return spec;
}

int run_score(const ParsedArgs& args) {
  if (!args.has("--tokens")) throw UsageError("--tokens FILE is required");
  const auto config = config::load<ScoreConfig>("", args.overrides);
  nn::PretrainedModel pretrained = nn::load_pretrained(args.positionals[0], at::kFloat);
  std::printf("%s\n", pretrained.report.text().c_str());
  nn::HybridLM& model = pretrained.model;
  const at::Tensor tokens = read_token_file(args.get("--tokens"), model->options.vocab_size);
  sleep::SleepOptions opts = config.sleep;
  const bool plain = args.has("--plain");
  if (!plain) {
    try {
      opts.validate(model->n_layers());
    } catch (const std::invalid_argument& e) {
      throw config::ConfigError(std::string("config error: ") + e.what());
    }
  }
  torch::NoGradGuard no_grad;
  model->eval();
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
