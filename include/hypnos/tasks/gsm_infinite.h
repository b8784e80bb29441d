// GSM-Infinite problems as sequences (docs/tasks.md 3.4 "Layout"): BOS, question, problem,
// `answer`, `:`, N, right-padded; scored only at `:`. Also the loader of the official HF/JSONL
// data.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hypnos/tasks/gsm_infinite_tokenizer.h"
#include "hypnos/tasks/task.h"

namespace hypnos::tasks {

/// One problem as text, from the generator or from official data.
struct GsmProblem {
  std::string question;  ///< original case
  std::string problem;   ///< original case; sentences each followed by ". "
  int64_t answer = 0;    ///< 0..1000: a single number token
  int64_t op = 0;
  std::string mode;           ///< "forward" | "reverse" ("" when unknown)
  std::string template_name;  ///< "zoo" | "teachers" | "movies" (or the source's own name)
  int64_t d = 0;              ///< 2 | 3 (0 when unknown)
};

/// The example of `p`: targets[i] = tokens[i+1] (PAD at the end), loss_mask = 1 only at `:`, one
/// ScoreGroup with bucket "op=<op>" and tags "mode=<mode>", "template=<template>" (when known).
/// Throws std::invalid_argument when the sequence exceeds max_len (naming both lengths) or the
/// answer is not in 0..1000. *unknown counts words outside the vocabulary (encoded as UNK).
Example gsm_layout(const GsmProblem& p, const GsmTokenizer& tokenizer, int64_t max_len,
                   int64_t* unknown = nullptr);

/// The problem as text for a pretrained model's tokenizer (docs/tasks.md 3.5): the prompt is the
/// question, a newline, the problem, a newline and "Answer:" (no chain of thought); the completion
/// is " N". Surrounding whitespace of question and problem is dropped.
std::string gsm_prompt_text(const GsmProblem& p);
std::string gsm_completion_text(const GsmProblem& p);

/// One `hypnos generate gsm_infinite --text` line (no newline): {"id", "question", "problem",
/// "answer", "op", "mode", "template", "d", "prompt", "completion"}. read_gsm_official_jsonl and
/// scripts/tokenize_gsm.py read it back.
std::string gsm_text_jsonl(const GsmProblem& p, const std::string& id);

/// Official data (docs/tasks.md 3.4 "Official data"): one JSON object per line with problem,
/// question, solution (ending "Answer: N."), op, and optionally template, mode, d.
struct GsmOfficialData {
  std::vector<GsmProblem> problems;
  int64_t dropped = 0;  ///< lines whose answer is not an integer in 0..1000
};

/// Reads official GSM-Infinite JSONL (and gsm_text_jsonl lines: without a solution, the integer
/// answer is taken). Modes normalforward / forwardreverse become forward /
/// reverse and the published template names become zoo / teachers / movies. Throws
/// std::runtime_error naming path:line for a line that is not a JSON object or lacks a field.
GsmOfficialData read_gsm_official_jsonl(const std::string& path);

}  // namespace hypnos::tasks
