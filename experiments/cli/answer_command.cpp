// `hypnos answer DIR --memory MEMORY --question FILE [--max-new N]`: loads a memory written by
// `hypnos sleep` and decodes greedily after the question, one wake pass per new token (the
// document is never read again).
#include <cstdio>
#include <filesystem>
#include <optional>

#include "commands.h"
#include "hypnos/io/safetensors.h"
#include "hypnos/sleep/session.h"
#include "hypnos/tasks/tokenizer_vocab.h"
#include "model_source.h"

namespace hypnos::cli {

const CommandSpec& answer_spec() {
  static const CommandSpec spec{
      "answer",
      "answer a question from a memory saved by `hypnos sleep` (greedy decoding)",
      {"RUN_OR_MODEL_DIR"},
      {{"--memory", "FILE", "the memory file written by `hypnos sleep`"},
       {"--question", "FILE", "the question's token ids: one sequence per line, as --context"},
       {"--max-new", "N", "tokens to generate (default 1)"},
       {"--out", "FILE",
        "also write the logits each new token was chosen from, [B, max-new, vocab] fp32, as "
        "`logits` in a safetensors file"}},
      /*takes_overrides=*/false,
      "The model must be the one that slept (architecture and weights), and the sleep options\n"
      "are those the memory records. Each new token is the argmax of one wake pass over the\n"
      "pending tokens, the question and the tokens generated so far, starting at the memory:\n"
      "the same logits as one `hypnos score` pass over the document, the question and the\n"
      "answer. Pending tokens + question + new tokens must fit one window. Prints the new\n"
      "tokens, one line per sequence: as text when the model has a tokenizer (a checkpoint\n"
      "directory's tokenizer.json, or vocab.json + merges.txt; for a run, that of its\n"
      "task.tokenizer, else of its model.from), else as ids."};
  return spec;
}

int run_answer(const ParsedArgs& args) {
  for (const char* flag : {"--memory", "--question"}) {
    if (!args.has(flag)) throw UsageError(std::string(flag) + " FILE is required");
  }
  const long long max_new = args.get_int("--max-new", 1);
  if (max_new < 1) throw UsageError("--max-new must be >= 1");
  const std::string memory_path = args.get("--memory");
  const sleep::SleepOptions recorded = sleep::Session::recorded_options(memory_path);
  ModelSource source = load_model_source(args.positionals[0], {});
  std::fprintf(stderr, "%s\n", source.description.c_str());
  sleep::Session session(source.model, recorded);
  session.load(memory_path);

  at::Tensor sequence =
      read_token_file(args.get("--question"), source.model->options.vocab_size, "--question");
  const int64_t B = sequence.size(0), question = sequence.size(1);
  const int64_t pending = session.pending().defined() ? session.pending().size(1) : 0;
  if (session.pending().defined() && session.pending().size(0) != B) {
    throw UsageError("--question has " + std::to_string(B) + " sequences, the memory " +
                     std::to_string(session.pending().size(0)));
  }
  if (pending + question + max_new - 1 > recorded.window) {
    throw UsageError("the pending tokens (" + std::to_string(pending) + ") + the question (" +
                     std::to_string(question) + ") + --max-new - 1 (" +
                     std::to_string(max_new - 1) + ") exceed one window (" +
                     std::to_string(recorded.window) + " tokens)");
  }
  // Greedy: the last position's argmax joins the sequence, which is read again from the memory.
  std::vector<at::Tensor> chosen_from;
  for (long long i = 0; i < max_new; ++i) {
    const at::Tensor last = session.predict(sequence).select(1, sequence.size(1) - 1);
    chosen_from.push_back(last.to(at::kFloat));
    sequence = at::cat({sequence, last.argmax(-1, true)}, 1);
  }
  if (args.has("--out")) {
    io::save_safetensors(args.get("--out"),
                         io::NamedTensors{{"logits", at::stack(chosen_from, 1).contiguous()}});
  }
  const at::Tensor answer = sequence.narrow(1, question, max_new).contiguous();
  auto a = answer.accessor<int64_t, 2>();
  // Text when the model has a tokenizer, else the ids.
  const std::optional<tasks::TokenizerVocab> vocab =
      source.tokenizer_dir.empty()
          ? std::nullopt
          : std::optional(tasks::TokenizerVocab::load(source.tokenizer_dir.string()));
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> ids(&a[b][0], &a[b][0] + max_new);
    if (vocab) {
      std::printf("%s\n", vocab->decode(ids).c_str());
      continue;
    }
    for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %lld" : "%lld", (long long)ids[i]);
    std::printf("\n");
  }
  return 0;
}

}  // namespace hypnos::cli
