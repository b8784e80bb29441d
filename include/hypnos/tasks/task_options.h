// The `task:` config section: which task to generate and its knobs (docs/tasks.md sections 1-3).
// Only the selected task's keys are visited, flat, so the YAML reads task.name, task.t, task.n_max,
// ...
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "hypnos/config/fields.h"
#include "hypnos/tasks/task.h"

namespace hypnos::tasks {

enum class TaskName { kRule110, kDepo, kGsmInfinite };
enum class Rule110Boundary { kPeriodic, kZero };
enum class DepoTestK { kBalanced, kIid };
enum class GsmLength { kNoise, kZero };

/// docs/tasks.md section 1: n_states strings of `width` cells, evolved t steps; one query per
/// string.
struct Rule110Options {
  int64_t n_states = 4;  ///< strings per example (and queries). Default: 4
  int64_t width = 24;    ///< cells per string (the window length L). Default: 24
  int64_t t = 12;        ///< evolution steps before the label is read. Default: 12
  /// periodic: cells 0 and width-1 are neighbours; zero: cells outside the string are 0.
  /// Default: periodic
  Rule110Boundary boundary = Rule110Boundary::kPeriodic;

  template <class V>
  void visit(V& v) {
    v.field("n_states", n_states, "strings per example, each queried once", config::Range{1, 64});
    v.field("width", width, "cells per string", config::Range{3, 4096});
    v.field("t", t, "Rule 110 steps before the label (cell 0) is read", config::Range{0, 1 << 20});
    v.field("boundary", boundary, "neighbours of the end cells: periodic | zero");
  }
};

/// docs/tasks.md section 2: k hops on a shuffled cycle of n named nodes.
struct DepoOptions {
  int64_t n_max = 75;         ///< N: nodes in a test example, the largest train n. Default: 75
  int64_t k_max = 16;         ///< K: largest hop count. Default: 16
  int64_t queries = 10;       ///< M: queries per example (at most n). Default: 10
  int64_t name_vocab = 50;    ///< V: piece ids per name position. Default: 50
  int64_t context_len = 300;  ///< tokens of (left-padded) context. Default: 300
  int64_t query_len = 60;     ///< tokens of (right-padded) queries. Default: 60
  /// balanced: every k of {1, 2, 4, ..., K} equally often per test example; iid: uniform draws.
  /// Default: balanced
  DepoTestK test_k = DepoTestK::kBalanced;

  template <class V>
  void visit(V& v) {
    v.field("n_max", n_max, "nodes per test example and largest train n",
            config::Range{3, 1 << 20});
    v.field("k_max", k_max, "largest hop count K", config::Range{1, 1 << 20});
    v.field("queries", queries, "queries per example M", config::Range{1, 1 << 20});
    v.field("name_vocab", name_vocab, "piece ids per name position V", config::Range{1, 1 << 20});
    v.field("context_len", context_len, "context tokens (left-padded)", config::Range{1, 1 << 24});
    v.field("query_len", query_len, "query tokens (right-padded)", config::Range{1, 1 << 24});
    v.field("test_k", test_k, "hop counts of test queries: balanced | iid");
  }
};

/// docs/tasks.md section 3.4: the GSM-Infinite "realistic" problems as hypnos generates them.
struct GsmInfiniteOptions {
  int64_t d = 3;  ///< 2 = medium (sums), 3 = hard (averages). Default: 3
  GsmLength length =
      GsmLength::kNoise;          ///< noise: distractors up to tau; zero: none. Default: noise
  int64_t length_min = 2000;      ///< smallest tau (hypnos tokens). Default: 2000
  int64_t length_max = 3300;      ///< largest tau (hypnos tokens). Default: 3300
  int64_t max_len = 3392;         ///< T: sequences are right-padded to this. Default: 3392
  int64_t op_max = 8;             ///< ops are 1..op_max. Default: 8
  double reverse_fraction = 0.5;  ///< share of reverse-mode problems. Default: 0.5
  double weight_zoo = 0.5;        ///< template mix. Default: 0.5
  double weight_teachers = 0.25;  ///< Default: 0.25
  double weight_movies = 0.25;    ///< Default: 0.25
  int64_t ip_max = 20;            ///< most structure edges. Default: 20
  int64_t number_range = 5;       ///< r: constants are below r. Default: 5
  int64_t max_attempts = 10000;   ///< generator attempts before giving up. Default: 10000
  bool vocab_extend = true;       ///< official data: append unseen words. Default: true
  /// Folder of the distractor lists; empty: $HYPNOS_DATA_DIR/gsm_infinite, else the source
  /// tree's data/gsm_infinite. Default: ""
  std::string data_dir;
  /// Problems from a file instead of the generator (docs/tasks.md 3.5), in the word-level layout:
  /// official GSM-Infinite JSONL or `hypnos generate gsm_infinite --text`. Default: ""
  std::string data_file;
  /// Problems tokenised by a pretrained model's tokenizer (NAME.tokens with NAME.index.jsonl
  /// beside it, from scripts/tokenize_gsm.py). Default: ""
  std::string token_file;
  /// Held-out problems for evaluation (the test split), tokenised like token_file; empty: the
  /// test split reads token_file too. Needs token_file. Default: ""
  std::string eval_token_file;
  /// Folder of the tokenizer the token file must have been written with (its SHA-256 is checked);
  /// empty: model.from. Default: ""
  std::string tokenizer;
  /// Training from a file (data_file, token_file): each epoch reads every problem once in its own
  /// order, drawn from run.seed and the epoch; false: the file's order every epoch. Default: true
  bool shuffle = true;

  template <class V>
  void visit(V& v) {
    v.field("d", d, "problem depth: 2 (medium) or 3 (hard)", config::Range{2, 3});
    v.field("length", length, "distractor text: noise | zero");
    v.field("length_min", length_min, "smallest target length tau", config::Range{1, 1 << 24});
    v.field("length_max", length_max, "largest target length tau", config::Range{1, 1 << 24});
    v.field("max_len", max_len, "sequence length T (right-padded)", config::Range{8, 1 << 24});
    v.field("op_max", op_max, "operations per problem are 1..op_max", config::Range{1, 15});
    v.field("reverse_fraction", reverse_fraction, "share of reverse-mode problems",
            config::Range{0, 1});
    v.field("weight_zoo", weight_zoo, "template weight of zoo", config::Range{0, 1e9});
    v.field("weight_teachers", weight_teachers, "template weight of teachers",
            config::Range{0, 1e9});
    v.field("weight_movies", weight_movies, "template weight of movies", config::Range{0, 1e9});
    v.field("ip_max", ip_max, "most structure edges", config::Range{1, 1000});
    v.field("number_range", number_range, "constants are drawn below this", config::Range{3, 1000});
    v.field("max_attempts", max_attempts, "attempts before the generator gives up",
            config::Range{1, 1e9});
    v.field("vocab_extend", vocab_extend, "official data: append unseen words to the vocabulary");
    v.field("data_dir", data_dir,
            "folder of <template>_{tops,items}.txt; empty: $HYPNOS_DATA_DIR/gsm_infinite or the "
            "source tree's data/gsm_infinite");
    v.field("data_file", data_file,
            "problems from a JSONL file (official GSM-Infinite or `hypnos generate --text`) in the "
            "word-level layout; empty: generated");
    v.field(
        "token_file", token_file,
        "problems tokenised by the model's tokenizer: NAME.tokens (index NAME.index.jsonl) from "
        "scripts/tokenize_gsm.py; empty: none");
    v.field("eval_token_file", eval_token_file,
            "held-out problems the evaluation reads (a token file like task.token_file); empty: "
            "task.token_file");
    v.field("tokenizer", tokenizer,
            "folder of the tokenizer.json the token file was written with; empty: model.from");
    v.field("shuffle", shuffle,
            "training from a file: each epoch in its own seeded order (false: the file's order)");
  }
};

/// The `task:` section. `name` is visited first so a loader that assigns as it visits sees the
/// selected task before its keys.
struct TaskOptions {
  TaskName name = TaskName::kRule110;  ///< Default: rule110
  Rule110Options rule110;
  DepoOptions depo;
  GsmInfiniteOptions gsm;

  template <class V>
  void visit(V& v) {
    v.field("name", name, "which task: rule110 | depo | gsm_infinite");
    switch (name) {
      case TaskName::kRule110:
        rule110.visit(v);
        break;
      case TaskName::kDepo:
        depo.visit(v);
        break;
      case TaskName::kGsmInfinite:
        gsm.visit(v);
        break;
    }
  }
};

/// The task named by `options`, drawing its examples from `seed`. Throws std::invalid_argument
/// naming the key when the options are inconsistent (e.g. a context too short for n_max).
std::unique_ptr<Task> make_task(const TaskOptions& options, uint64_t seed);

}  // namespace hypnos::tasks

namespace hypnos::config {

template <>
struct EnumNames<tasks::TaskName> {
  static constexpr std::array<std::string_view, 3> names{"rule110", "depo", "gsm_infinite"};
};
template <>
struct EnumNames<tasks::Rule110Boundary> {
  static constexpr std::array<std::string_view, 2> names{"periodic", "zero"};
};
template <>
struct EnumNames<tasks::DepoTestK> {
  static constexpr std::array<std::string_view, 2> names{"balanced", "iid"};
};
template <>
struct EnumNames<tasks::GsmLength> {
  static constexpr std::array<std::string_view, 2> names{"noise", "zero"};
};

}  // namespace hypnos::config
