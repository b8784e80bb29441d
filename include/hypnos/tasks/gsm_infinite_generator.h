// The GSM-Infinite "realistic" generator of docs/tasks.md 3.1 with the hypnos adaptation of 3.4:
// one problem per (d, op, mode, template) from an example's RNG stream, plus the distractor lists
// it reads from data/gsm_infinite/ and the Task that lays problems out as sequences.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hypnos/tasks/gsm_infinite.h"
#include "hypnos/tasks/gsm_infinite_tokenizer.h"
#include "hypnos/tasks/rng.h"
#include "hypnos/tasks/task.h"
#include "hypnos/tasks/task_options.h"

namespace hypnos::tasks {

/// One template's distractor names (docs/tasks.md 3.4): subcategories of tops and of items.
struct GsmDistractors {
  std::vector<std::vector<std::string>> tops;
  std::vector<std::vector<std::string>> items;
};

/// The folder holding <template>_{tops,items}.txt: `configured` when not empty, else
/// $HYPNOS_DATA_DIR/gsm_infinite, else the installed share/hypnos/data/gsm_infinite, else the
/// source tree's data/gsm_infinite (both paths compiled in, see version.h).
std::string gsm_data_dir(const std::string& configured);

/// Reads one list: "# subcategory" lines open a group, other non-blank lines are names. Throws
/// std::runtime_error naming path:line for a name before any header, an empty group, a name with
/// one of `. , ? : ; ( ) !`, a non-ASCII byte, or one of the words in, and, per, equals.
std::vector<std::vector<std::string>> read_gsm_name_list(const std::string& path);

/// <dir>/<template>_tops.txt and <dir>/<template>_items.txt.
GsmDistractors load_gsm_distractors(const std::string& dir, const std::string& template_name);

/// What one problem must be. `template_index` indexes gsm_templates().
struct GsmSpec {
  int64_t d = 3;
  int64_t op = 1;
  bool reverse = false;
  int64_t template_index = 0;
};

/// A generated problem and how it was reached.
struct GsmGenerated {
  GsmProblem problem;
  int64_t attempts = 0;  ///< attempts including the accepted one
  int64_t tau = 0;       ///< target length with noise (0 without)
  int64_t length = 0;    ///< tokens of BOS, question, problem, `answer :` and N
};

/// Generates problems from the options' sizes (ip_max, number_range, length, max_attempts) and one
/// distractor set per template (in gsm_templates() order).
class GsmGenerator {
 public:
  GsmGenerator(const GsmInfiniteOptions& options, std::vector<GsmDistractors> distractors);

  /// Attempts from `stream` until one passes every check (docs/tasks.md 3.1 "Checks"); rejected
  /// attempts keep drawing from the same stream. Throws std::runtime_error naming the spec after
  /// options.max_attempts rejections, std::invalid_argument for a spec out of range.
  GsmGenerated generate(const GsmSpec& spec, Stream& stream) const;

  /// The template mix, mode and op of example `index` (docs/tasks.md 3.4 "Mix"), drawn first.
  GsmSpec draw_spec(Split split, uint64_t index, Stream& stream) const;

  const std::vector<GsmDistractors>& distractors() const { return distractors_; }

 private:
  GsmInfiniteOptions options_;
  std::vector<GsmDistractors> distractors_;
};

/// task.name = gsm_infinite: generated problems in the layout of gsm_layout.
class GsmInfiniteTask : public Task {
 public:
  /// Loads the distractor lists (options.data_dir or its fallbacks) and builds the vocabulary of
  /// the core texts and the lists. Throws std::invalid_argument naming an inconsistent key.
  GsmInfiniteTask(const GsmInfiniteOptions& options, uint64_t seed);

  std::string_view name() const override { return "gsm_infinite"; }
  int64_t vocab_size() const override { return tokenizer_.vocab_size(); }
  int64_t seq_len() const override { return options_.max_len; }
  Example example(Split split, uint64_t index) const override;
  std::string token_name(int64_t id) const override { return tokenizer_.token(id); }

  /// The problem of example (split, index) before layout.
  GsmGenerated problem(Split split, uint64_t index) const;
  const GsmTokenizer& tokenizer() const { return tokenizer_; }

 private:
  GsmInfiniteOptions options_;
  uint64_t seed_;
  GsmGenerator generator_;
  GsmTokenizer tokenizer_;
};

}  // namespace hypnos::tasks
