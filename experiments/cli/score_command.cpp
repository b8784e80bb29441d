// `hypnos score MODEL_OR_RUN_DIR --tokens FILE [--out FILE] [--plain] [sleep.key=value ...]`: runs
// token sequences through a pretrained checkpoint (a Hugging Face directory) or a hypnos run's
// newest verified checkpoint and prints the mean negative log-likelihood per token and per window;
// --out writes the logits.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/io/safetensors.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/train/checkpoint.h"
#include "hypnos/train/run_config.h"

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

namespace fs = std::filesystem;

/// The model to score and the sleep keys the overrides start from.
struct ScoredModel {
  nn::HybridLM model{nullptr};
  sleep::SleepOptions sleep;  ///< a run's sleep section; defaults for a checkpoint directory
};

/// A Hugging Face checkpoint directory: the model its config.json describes, loaded (fp32).
ScoredModel load_hf_directory(const fs::path& dir) {
  nn::PretrainedModel pretrained = nn::load_pretrained(dir, at::kFloat);
  std::printf("%s\n", pretrained.report.text().c_str());
  return {pretrained.model, sleep::SleepOptions()};
}

/// A hypnos run directory: the model of its newest verified checkpoint (built from that
/// checkpoint's config.yaml, else the run's) and the run's sleep section. The model keys are read
/// as the run resolved them, so a run started with model.from does not need that directory again.
ScoredModel load_run_directory(const fs::path& run_dir) {
  auto report = [](const fs::path& dir, const std::string& problem) {
    std::fprintf(stderr, "hypnos score: skipped %s (%s)\n", dir.string().c_str(), problem.c_str());
  };
  const auto checkpoint = train::find_latest_valid_checkpoint(run_dir, report);
  if (!checkpoint) {
    throw std::runtime_error("no valid checkpoint in run directory " + run_dir.string());
  }
  const fs::path saved = fs::exists(*checkpoint / "config.yaml") ? *checkpoint / "config.yaml"
                                                                 : run_dir / "config.yaml";
  const auto config = config::load<train::RunConfig>(saved.string(), {});
  try {
    config.model.validate();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError("config error: " + saved.string() + ": " + e.what());
  }
  ScoredModel out{nn::HybridLM(config.model), config.sleep};
  std::vector<std::string> nonfinite;
  const train::TrainingState state =
      train::load_checkpoint(*checkpoint, out.model, nullptr, &nonfinite);
  for (const auto& tensor : nonfinite) {
    std::fprintf(stderr, "hypnos score: warning: %s holds non-finite weights: %s\n",
                 checkpoint->string().c_str(), tensor.c_str());
  }
  std::printf("run %s: checkpoint %s (step %lld), model %s\n", run_dir.string().c_str(),
              checkpoint->filename().string().c_str(), static_cast<long long>(state.step),
              config.model.pattern.c_str());
  return out;
}

/// The sleep keys: `base` with the command line's overrides applied (only sleep.* exists).
sleep::SleepOptions sleep_options(const sleep::SleepOptions& base,
                                  const std::vector<std::string>& overrides) {
  auto doc = config::Document::from_string(config::to_yaml(ScoreConfig{base}), "the sleep keys");
  for (const auto& o : overrides) doc.apply_override(o);
  ScoreConfig out;
  config::Reader reader(doc);
  out.visit(reader);
  doc.check_all_used(reader.visited());
  return out.sleep;
}

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
      {"MODEL_OR_RUN_DIR"},
      {{"--tokens", "FILE",
        "token ids: whitespace-separated, one sequence per line, equal lengths"},
       {"--out", "FILE", "write the logits [B, T, vocab] fp32 as `logits` in a safetensors file"},
       {"--plain", "",
        "the checkpoint's ordinary forward (one causal pass; Ouro's loops) instead "
        "of the sleep window loop"}},
      /*takes_overrides=*/true,
      "MODEL_OR_RUN_DIR holds config.json and model.safetensors (or a sharded index), or is a\n"
      "hypnos run directory (config.yaml; its newest verified checkpoint is scored and its sleep\n"
      "section is the default). Without --plain the tokens run through the sleep window loop\n"
      "with the sleep.* keys (sleep.n_passes, sleep.window, sleep.loop_layers, sleep.eviction,\n"
      "...); every window's wake logits are scored. Token t's loss is that of predicting token\n"
      "t+1; a window's mean covers the predictions made from its positions. Runs on the CPU in\n"
      "fp32."};
  return spec;
}

int run_score(const ParsedArgs& args) {
  if (!args.has("--tokens")) throw UsageError("--tokens FILE is required");
  const fs::path dir = args.positionals[0];
  const bool run_dir = fs::exists(dir / "config.yaml") && !fs::exists(dir / "config.json");
  if (!run_dir && !fs::exists(dir / "config.json")) {
    throw UsageError(dir.string() +
                     " is neither a checkpoint directory (config.json) nor a run directory "
                     "(config.yaml)");
  }
  // Overrides are checked before the (possibly long) load.
  sleep_options(sleep::SleepOptions(), args.overrides);
  ScoredModel scored = run_dir ? load_run_directory(dir) : load_hf_directory(dir);
  nn::HybridLM& model = scored.model;
  const at::Tensor tokens = read_token_file(args.get("--tokens"), model->options.vocab_size);
  const sleep::SleepOptions opts = sleep_options(scored.sleep, args.overrides);
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
