// JSONL writer and validating reader for task examples. Key order is kept (ordered_json) so that a
// generated file reads tokens first, as docs/design.md 3 lists them.
#include "hypnos/tasks/jsonl.h"

#include <nlohmann/json.hpp>

#include "tasks/text_lines.h"

namespace hypnos::tasks {
namespace {

using Json = nlohmann::ordered_json;

std::vector<int64_t> int_array(const Json& obj, const std::string& key, int64_t seq_len,
                               const std::string& where) {
  if (!obj.contains(key)) throw std::runtime_error(where + ": missing field '" + key + "'");
  const Json& a = obj[key];
  if (!a.is_array()) throw std::runtime_error(where + ": field '" + key + "' is not an array");
  if (static_cast<int64_t>(a.size()) != seq_len) {
    throw std::runtime_error(where + ": field '" + key + "' has " + std::to_string(a.size()) +
                             " entries, expected seq_len = " + std::to_string(seq_len));
  }
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_number_integer()) {
      throw std::runtime_error(where + ": " + key + "[" + std::to_string(i) +
                               "] = " + detail::clip(a[i].dump()) + " is not an integer");
    }
    out.push_back(a[i].get<int64_t>());
  }
  return out;
}

void check_ids(const std::vector<int64_t>& ids, const std::string& key, int64_t vocab_size,
               const std::string& where) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      throw std::runtime_error(where + ": " + key + "[" + std::to_string(i) +
                               "] = " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                               std::to_string(vocab_size) + ")");
    }
  }
}

std::vector<ScoreGroup> read_groups(const Json& obj, const std::vector<uint8_t>& mask,
                                    const std::string& where) {
  std::vector<ScoreGroup> groups;
  if (!obj.contains("groups")) {
    for (size_t i = 0; i < mask.size(); ++i) {
      if (!mask[i]) continue;
      if (i == 0 || !mask[i - 1]) groups.emplace_back().bucket = "all";
      groups.back().positions.push_back(static_cast<int64_t>(i));
    }
    return groups;
  }
  const std::string bad = where + ": field 'groups' must be a list of {\"bucket\": string, " +
                          "\"positions\": [scored positions], optional \"tags\": [strings]}";
  const Json& a = obj["groups"];
  if (!a.is_array()) throw std::runtime_error(bad);
  for (const Json& g : a) {
    if (!g.is_object() || !g.contains("bucket") || !g["bucket"].is_string() ||
        !g.contains("positions") || !g["positions"].is_array()) {
      throw std::runtime_error(bad);
    }
    ScoreGroup group;
    group.bucket = g["bucket"].get<std::string>();
    for (const Json& p : g["positions"]) {
      if (!p.is_number_integer() || p.get<int64_t>() < 0 ||
          p.get<int64_t>() >= static_cast<int64_t>(mask.size()) || !mask[p.get<int64_t>()]) {
        throw std::runtime_error(where + ": group '" + group.bucket + "' position " +
                                 detail::clip(p.dump()) +
                                 " is not a scored position (loss_mask = 1)");
      }
      group.positions.push_back(p.get<int64_t>());
    }
    if (g.contains("tags")) {
      if (!g["tags"].is_array()) throw std::runtime_error(bad);
      for (const Json& t : g["tags"]) {
        if (!t.is_string()) throw std::runtime_error(bad);
        group.tags.push_back(t.get<std::string>());
      }
    }
    groups.push_back(std::move(group));
  }
  return groups;
}

}  // namespace

std::string example_to_jsonl(const Example& ex) {
  Json line;
  line["tokens"] = ex.tokens;
  line["targets"] = ex.targets;
  line["loss_mask"] = ex.loss_mask;
  if (!ex.fields_json.empty()) {
    const Json fields = Json::parse(ex.fields_json);  // a named object: items() refers into it
    for (const auto& [key, value] : fields.items()) line[key] = value;
  }
  Json groups = Json::array();
  for (const ScoreGroup& g : ex.groups) {
    Json group{{"bucket", g.bucket}, {"positions", g.positions}};
    if (!g.tags.empty()) group["tags"] = g.tags;
    groups.push_back(std::move(group));
  }
  line["groups"] = groups;
  return line.dump();
}

void write_jsonl(const Task& task, Split split, uint64_t first, int64_t n, std::ostream& out) {
  for (int64_t i = 0; i < n; ++i) out << example_to_jsonl(task.example(split, first + i)) << '\n';
}

std::vector<Example> read_examples_jsonl(const std::string& path, int64_t vocab_size,
                                         int64_t seq_len) {
  std::ifstream in = detail::open_data_file(path, "task data file");
  std::vector<Example> examples;
  std::string text;
  for (int64_t line_no = 1; detail::read_line(in, text, path + ":" + std::to_string(line_no));
       ++line_no) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const Json obj = detail::parse_object_line<Json>(text, where);
    Example ex;
    ex.tokens = int_array(obj, "tokens", seq_len, where);
    ex.targets = int_array(obj, "targets", seq_len, where);
    const std::vector<int64_t> mask = int_array(obj, "loss_mask", seq_len, where);
    check_ids(ex.tokens, "tokens", vocab_size, where);
    check_ids(ex.targets, "targets", vocab_size, where);
    for (size_t i = 0; i < mask.size(); ++i) {
      if (mask[i] != 0 && mask[i] != 1) {
        throw std::runtime_error(where + ": loss_mask[" + std::to_string(i) +
                                 "] = " + std::to_string(mask[i]) + ", expected 0 or 1");
      }
      ex.loss_mask.push_back(static_cast<uint8_t>(mask[i]));
    }
    ex.groups = read_groups(obj, ex.loss_mask, where);
    Json fields = Json::object();
    for (auto& [key, value] : obj.items()) {
      if (key != "tokens" && key != "targets" && key != "loss_mask" && key != "groups") {
        fields[key] = value;
      }
    }
    ex.fields_json = fields.dump();
    examples.push_back(std::move(ex));
  }
  if (examples.empty()) throw std::runtime_error(path + ": no examples");
  return examples;
}

}  // namespace hypnos::tasks
