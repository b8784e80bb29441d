// The score group and the record fields of one GSM-Infinite problem, shared by the generated task,
// the official JSONL and text files (gsm_infinite.cpp) and token files (token_file_task.cpp): the
// same buckets (op=, tagged mode= and template=) and the same field names wherever it comes from.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "hypnos/tasks/task.h"

namespace hypnos::tasks::detail {

/// Bucket "op=<op>" over `positions`, tagged "mode=<mode>" and "template=<name>" when known.
inline ScoreGroup gsm_score_group(int64_t op, const std::string& mode,
                                  const std::string& template_name,
                                  std::vector<int64_t> positions) {
  ScoreGroup group{"op=" + std::to_string(op), std::move(positions), {}};
  if (!mode.empty()) group.tags.push_back("mode=" + mode);
  if (!template_name.empty()) group.tags.push_back("template=" + template_name);
  return group;
}

/// The fields every GSM-Infinite record carries after its own (question and problem, or id).
inline void add_gsm_fields(nlohmann::ordered_json& fields, int64_t answer, int64_t op,
                           const std::string& mode, const std::string& template_name, int64_t d) {
  fields["answer"] = answer;
  fields["op"] = op;
  fields["mode"] = mode;
  fields["template"] = template_name;
  fields["d"] = d;
}

}  // namespace hypnos::tasks::detail
