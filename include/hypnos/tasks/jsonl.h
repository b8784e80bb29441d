// Examples as JSON Lines (docs/design.md 3, `hypnos generate`): one object per example with tokens,
// targets, loss_mask, the task's own fields and its score groups; and a validating reader whose
// errors name file:line (docs/reliability.md R14).
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "hypnos/tasks/task.h"

namespace hypnos::tasks {

/// One line (no newline): {"tokens", "targets", "loss_mask", <fields_json keys>, "groups"}, each
/// group {"bucket", "positions"[, "tags"]}.
std::string example_to_jsonl(const Example& example);

/// Examples first .. first + n - 1 of `split`, one line each.
void write_jsonl(const Task& task, Split split, uint64_t first, int64_t n, std::ostream& out);

/// Reads examples written by write_jsonl (or by hand). Every line must hold tokens, targets and
/// loss_mask of length seq_len with ids in [0, vocab_size) and a 0/1 mask; `groups` is optional
/// (default: one group per run of consecutive scored positions, bucket "all"); the other keys
/// become fields_json. Blank lines are skipped. Throws std::runtime_error "path:line: ...".
std::vector<Example> read_examples_jsonl(const std::string& path, int64_t vocab_size,
                                         int64_t seq_len);

}  // namespace hypnos::tasks
