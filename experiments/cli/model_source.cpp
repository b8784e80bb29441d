// Loading a run directory or a Hugging Face checkpoint for inference, and token files.
#include "model_source.h"

#include <fstream>
#include <sstream>

#include "command_line.h"
#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/tasks/tokenizer_vocab.h"
#include "hypnos/train/checkpoint.h"
#include "hypnos/train/run_config.h"
#include "hypnos/train/training_model.h"

namespace hypnos::cli {
namespace {

/// The keys the inference commands take as overrides on a checkpoint: the sleep section.
struct SleepConfig {
  sleep::SleepOptions sleep;
  template <class V>
  void visit(V& v) {
    v.section("sleep", sleep);
  }
};

/// `base` with `overrides` (sleep.* only) applied, validated like every config key.
sleep::SleepOptions with_overrides(const sleep::SleepOptions& base,
                                   const std::vector<std::string>& overrides) {
  config::Document doc =
      config::Document::from_string(config::to_yaml(SleepConfig{base}), "the sleep keys");
  for (const auto& o : overrides) doc.apply_override(o);
  SleepConfig out;
  config::Reader reader(doc);
  out.visit(reader);
  doc.check_all_used(reader.visited());
  return out.sleep;
}

bool holds_tokenizer(const std::filesystem::path& dir) {
  if (dir.empty()) return false;
  try {
    tasks::tokenizer_files(dir.string());
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

/// A run's newest verified checkpoint, built from that checkpoint's config.yaml (else the run's)
/// as the run resolved it: a run started with model.from does not need that directory again.
ModelSource load_run(const std::filesystem::path& run_dir) {
  auto report = [](const std::filesystem::path& dir, const std::string& problem) {
    std::fprintf(stderr, "skipped %s (%s)\n", dir.string().c_str(), problem.c_str());
  };
  const auto checkpoint = train::find_latest_valid_checkpoint(run_dir, report);
  if (!checkpoint) {
    throw std::runtime_error("no valid checkpoint in the run directory " + run_dir.string());
  }
  const std::filesystem::path saved = std::filesystem::exists(*checkpoint / "config.yaml")
                                          ? *checkpoint / "config.yaml"
                                          : run_dir / "config.yaml";
  const auto config = config::load<train::RunConfig>(saved.string(), {});
  try {
    config.model.validate();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError("config error: " + saved.string() + ": " + e.what());
  }
  // In the dtype the run trained (train.param_dtype), as its checkpoint holds the weights; the
  // inference commands then compute in fp32 (load_model_source).
  nn::HybridLM model = train::build_training_model(config.model, config.train.param_dtype,
                                                   train::InitialWeights::kLoadedNext);
  std::vector<std::string> nonfinite;
  const auto state = train::load_checkpoint(*checkpoint, model, nullptr, &nonfinite);
  for (const auto& tensor : nonfinite) {
    std::fprintf(stderr, "warning: %s holds non-finite weights: %s\n", checkpoint->string().c_str(),
                 tensor.c_str());
  }
  const std::string& tokenizer =
      config.task.gsm.tokenizer.empty() ? config.model.from : config.task.gsm.tokenizer;
  return {model, config.sleep,
          "run " + run_dir.string() + ": checkpoint " + checkpoint->filename().string() +
              " (step " + std::to_string(state.step) + "), model " + config.model.pattern,
          holds_tokenizer(tokenizer) ? std::filesystem::path(tokenizer) : std::filesystem::path()};
}

ModelSource load_hf(const std::filesystem::path& dir) {
  nn::PretrainedModel pretrained = nn::load_pretrained(dir, at::kFloat);
  return {pretrained.model, sleep::SleepOptions(), pretrained.report.text(),
          holds_tokenizer(dir) ? dir : std::filesystem::path()};
}

}  // namespace

ModelSource load_model_source(const std::filesystem::path& dir,
                              const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides) {
    if (o.rfind("sleep.", 0) != 0) {
      throw UsageError("'" + o + "': only sleep.* keys can be overridden here");
    }
  }
  const bool is_hf = std::filesystem::exists(dir / "config.json");
  if (!is_hf && !std::filesystem::exists(dir / "config.yaml")) {
    throw UsageError(dir.string() +
                     " is neither a run directory (config.yaml) nor a Hugging Face checkpoint "
                     "(config.json)");
  }
  with_overrides(sleep::SleepOptions(), overrides);  // bad overrides fail before a long load
  ModelSource source = is_hf ? load_hf(dir) : load_run(dir);
  source.sleep = with_overrides(source.sleep, overrides);
  try {
    source.sleep.validate(source.model->n_layers());
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("config error: ") + e.what());
  }
  source.model->to(at::kCPU, at::kFloat);
  source.model->eval();
  return source;
}

at::Tensor read_token_file(const std::string& path, int64_t vocab, const std::string& flag,
                           int64_t min_length) {
  std::ifstream in(path);
  if (!in) throw UsageError("cannot read " + flag + " " + path);
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
  if (rows.empty() || static_cast<int64_t>(rows[0].size()) < min_length) {
    throw UsageError(path + ": no sequence of " + std::to_string(min_length) + "+ tokens");
  }
  at::Tensor t = at::empty(
      {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kLong);
  auto a = t.accessor<int64_t, 2>();
  for (size_t b = 0; b < rows.size(); ++b) {
    for (size_t i = 0; i < rows[b].size(); ++i) a[b][i] = rows[b][i];
  }
  return t;
}

}  // namespace hypnos::cli
