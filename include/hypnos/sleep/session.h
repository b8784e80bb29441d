// Session: inference with sleep. It reads a document window by window (each full window is slept on
// and evicted), answers queries with one wake pass, and saves / loads its consolidated memory as a
// safetensors file so that a document read once can be queried later, in another process.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <string>

#include "hypnos/memory/model_memory.h"
#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/sleep/sleep_options.h"

namespace hypnos::sleep {

class Session {
 public:
  /// Validates `options` against the model. Runs without autograd.
  Session(nn::HybridLM model, SleepOptions options);

  /// Reads tokens [B, T] (B fixed by the first call). Every window that fills up (L tokens) gets
  /// N passes and is evicted; a partial window stays pending as raw tokens until it fills.
  void feed(const at::Tensor& tokens);

  /// Logits [B, Q, vocab] for `query` [B, Q] read after the pending tokens, from one wake pass over
  /// pending ++ query (at most L tokens) starting at the consolidated memory. Nothing is consumed:
  /// the memory and the pending tokens are unchanged.
  at::Tensor predict(const at::Tensor& query);

  /// Writes the memory (the `layers.<i>.<slot>` tensors of ModelMemory::named_tensors) and the
  /// pending tokens ("pending") to `path`, with every sleep option and the model's fingerprint
  /// (its architecture and the SHA-256 of its weights) as metadata.
  void save(const std::filesystem::path& path) const;
  /// Replaces the memory and pending tokens with those of `path`. Throws std::runtime_error naming
  /// the file and, for each difference, the key with both values, when the memory was written
  /// under other sleep options or by another model (architecture or weights).
  void load(const std::filesystem::path& path);

  /// The sleep options a memory file was consolidated under (its `sleep` metadata), so that a
  /// Session can be made to load it. Throws std::runtime_error naming the file when it is not a
  /// memory file or its options do not parse.
  static SleepOptions recorded_options(const std::filesystem::path& path);

  const memory::ModelMemory& memory() const { return memory_; }
  /// Tokens read since the last eviction, [B, P] (undefined before the first feed).
  const at::Tensor& pending() const { return pending_; }

 private:
  /// The file metadata save() writes and load() requires.
  std::map<std::string, std::string> metadata() const;

  nn::HybridLM model_;
  SleepOptions options_;
  memory::ModelMemory memory_;
  at::Tensor pending_;  // [B, P], P < L
};

}  // namespace hypnos::sleep
