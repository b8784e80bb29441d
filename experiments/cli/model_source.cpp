// Loading a run directory or a Hugging Face checkpoint for inference, and token files.
#include "model_source.h"

#include <fstream>
#include <sstream>

#include "command_line.h"
#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/train/checkpoint.h"
#include "hypnos/train/run_config.h"

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

ModelSource load_run(const std::filesystem::path& run_dir,
                     const std::vector<std::string>& overrides) {
  const auto config = train::load_run_config((run_dir / "config.yaml").string(), overrides);
  // Corrupt checkpoints are skipped (and named): the newest valid one is used.
  auto report = [](const std::filesystem::path& dir, const std::string& problem) {
    std::fprintf(stderr, "skipping %s: %s\n", dir.string().c_str(), problem.c_str());
  };
  const auto checkpoint = train::find_latest_valid_checkpoint(run_dir, report, std::nullopt);
  if (!checkpoint) {
    throw std::runtime_error("no valid checkpoint in the run directory " + run_dir.string());
  }
  nn::HybridLM model(config.model);
  const auto state = train::load_checkpoint(*checkpoint, model, nullptr, nullptr);
  return {model, config.sleep,
          "run " + run_dir.string() + ", checkpoint of step " + std::to_string(state.step)};
}

ModelSource load_hf(const std::filesystem::path& dir, const std::vector<std::string>& overrides) {
  const auto config = config::load<SleepConfig>("", overrides);
  nn::PretrainedModel pretrained = nn::load_pretrained(dir, at::kFloat);
  return {pretrained.model, config.sleep, pretrained.report.text()};
}

}  // namespace

ModelSource load_model_source(const std::filesystem::path& dir,
                              const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides) {
    if (o.rfind("sleep.", 0) != 0) {
      throw UsageError("'" + o + "': only sleep.* keys can be overridden here");
    }
  }
  const bool is_run = std::filesystem::exists(dir / "config.yaml");
  if (!is_run && !std::filesystem::exists(dir / "config.json")) {
    throw UsageError(dir.string() +
                     " is neither a run directory (config.yaml) nor a Hugging Face checkpoint "
                     "(config.json)");
  }
  ModelSource source = is_run ? load_run(dir, overrides) : load_hf(dir, overrides);
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
