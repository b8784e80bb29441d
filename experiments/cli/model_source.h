// What the inference commands (score, sleep, answer) run: a model read from a directory that is
// either a hypnos run (its config.yaml and newest valid checkpoint) or a Hugging Face checkpoint
// (config.json and model.safetensors), with the sleep options that go with it.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/sleep/sleep_options.h"

namespace hypnos::cli {

struct ModelSource {
  nn::HybridLM model;         ///< on the CPU, fp32, in eval mode
  sleep::SleepOptions sleep;  ///< a run's sleep section, or the defaults; overrides applied
  std::string description;    ///< what was loaded, for the log (a checkpoint's load report)
  /// The folder of the model's tokenizer (tokenizer.json, or vocab.json + merges.txt): a Hugging
  /// Face directory's own, or for a run its task.tokenizer, else its model.from; empty when that
  /// folder holds none (a hypnos model trained on word-level ids).
  std::filesystem::path tokenizer_dir;
};

/// Loads DIR: a run directory (config.yaml) or a Hugging Face checkpoint (config.json).
/// `overrides` are `sleep.key=value` only (anything else is a UsageError naming it); they apply on
/// top of the run's sleep section. A directory that is neither is a UsageError naming both files.
ModelSource load_model_source(const std::filesystem::path& dir,
                              const std::vector<std::string>& overrides);

/// Whitespace-separated token ids in [0, vocab), one sequence per line, every line of one length:
/// [B, T] int64. `flag` names the argument in errors ("--tokens"). Needs at least `min_length`
/// tokens per sequence.
at::Tensor read_token_file(const std::string& path, int64_t vocab, const std::string& flag,
                           int64_t min_length = 1);

}  // namespace hypnos::cli
