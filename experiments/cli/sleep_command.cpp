// `hypnos sleep DIR --context FILE --out MEMORY [sleep.key=value ...]`: reads a document window by
// window, sleeping on each full window (N passes, then eviction), and saves the consolidated memory
// with the tokens of the last, partial window: `hypnos answer` then answers questions about the
// document without reading it again.
#include <cstdio>

#include "commands.h"
#include "hypnos/sleep/session.h"
#include "model_source.h"

namespace hypnos::cli {

const CommandSpec& sleep_spec() {
  static const CommandSpec spec{
      "sleep",
      "read a document window by window, sleep on it, and save the consolidated memory",
      {"RUN_OR_MODEL_DIR"},
      {{"--context", "FILE",
        "the document's token ids: whitespace-separated, one sequence per line"},
       {"--out", "FILE", "the memory file to write (safetensors)"}},
      /*takes_overrides=*/true,
      "RUN_OR_MODEL_DIR is a hypnos run directory (its newest valid checkpoint and its sleep\n"
      "section) or a Hugging Face checkpoint directory (the sleep defaults). sleep.* overrides\n"
      "apply on top. Every full window of sleep.window tokens gets sleep.n_passes passes and is\n"
      "evicted; the tokens after the last full window stay in the memory file as raw tokens. The\n"
      "file records the sleep options and the model's fingerprint: `hypnos answer` refuses it\n"
      "for another model. Runs on the CPU in fp32."};
  return spec;
}

int run_sleep(const ParsedArgs& args) {
  if (!args.has("--context")) throw UsageError("--context FILE is required");
  if (!args.has("--out")) throw UsageError("--out FILE is required");
  ModelSource source = load_model_source(args.positionals[0], args.overrides);
  std::printf("%s\n", source.description.c_str());
  const at::Tensor context =
      read_token_file(args.get("--context"), source.model->options.vocab_size, "--context");
  sleep::Session session(source.model, source.sleep);
  session.feed(context);
  session.save(args.get("--out"));
  const int64_t pending = session.pending().size(1);
  std::printf(
      "slept on %lld windows of %lld tokens (N = %lld) for %lld sequences; %lld tokens pending; "
      "wrote %s\n",
      static_cast<long long>((context.size(1) - pending) / source.sleep.window),
      static_cast<long long>(source.sleep.window), static_cast<long long>(source.sleep.n_passes),
      static_cast<long long>(context.size(0)), static_cast<long long>(pending),
      args.get("--out").c_str());
  return 0;
}

}  // namespace hypnos::cli
