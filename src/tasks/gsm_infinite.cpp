// GSM-Infinite sequence layout and the official-data loader (docs/tasks.md 3.4). The answer marker
// `answer :` mirrors the original solution's "Answer: N", so N is predicted right after `:`.
#include "hypnos/tasks/gsm_infinite.h"

#include <nlohmann/json.hpp>

#include "tasks/gsm_score_group.h"
#include "tasks/text_lines.h"

namespace hypnos::tasks {

namespace {

/// A problem's record fields (generated examples and `generate --text` lines share them).
nlohmann::ordered_json problem_fields(const GsmProblem& p) {
  nlohmann::ordered_json fields;
  fields["question"] = p.question;
  fields["problem"] = p.problem;
  detail::add_gsm_fields(fields, p.answer, p.op, p.mode, p.template_name, p.d);
  return fields;
}

}  // namespace

Example gsm_layout(const GsmProblem& p, const GsmTokenizer& tokenizer, int64_t max_len,
                   int64_t* unknown) {
  if (p.answer < 0 || p.answer > GsmTokenizer::kMaxNumber) {
    throw std::invalid_argument("gsm_layout: answer = " + std::to_string(p.answer) +
                                ", expected 0..1000 (one number token)");
  }
  Example ex;
  ex.tokens.push_back(GsmTokenizer::kBos);
  for (const std::string* text : {&p.question, &p.problem}) {
    const std::vector<int64_t> ids = tokenizer.encode(*text, unknown);
    ex.tokens.insert(ex.tokens.end(), ids.begin(), ids.end());
  }
  const std::vector<int64_t> marker = tokenizer.encode("answer :", unknown);
  ex.tokens.insert(ex.tokens.end(), marker.begin(), marker.end());
  const int64_t colon = static_cast<int64_t>(ex.tokens.size()) - 1;
  ex.tokens.push_back(GsmTokenizer::kNumberBase + p.answer);
  if (static_cast<int64_t>(ex.tokens.size()) > max_len) {
    throw std::invalid_argument("gsm_layout: the problem takes " +
                                std::to_string(ex.tokens.size()) +
                                " tokens, above task.max_len = " + std::to_string(max_len));
  }
  ex.tokens.resize(max_len, GsmTokenizer::kPad);
  ex.targets.assign(ex.tokens.begin() + 1, ex.tokens.end());
  ex.targets.push_back(GsmTokenizer::kPad);
  ex.loss_mask.assign(max_len, 0);
  ex.loss_mask[colon] = 1;
  ex.groups.push_back(detail::gsm_score_group(p.op, p.mode, p.template_name, {colon}));
  ex.fields_json = problem_fields(p).dump();
  return ex;
}

namespace {

std::string trimmed(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

}  // namespace

std::string gsm_prompt_text(const GsmProblem& p) {
  return trimmed(p.question) + "\n" + trimmed(p.problem) + "\nAnswer:";
}

std::string gsm_completion_text(const GsmProblem& p) {
  return " " + std::to_string(p.answer);
}

std::string gsm_text_jsonl(const GsmProblem& p, const std::string& id) {
  nlohmann::ordered_json line;
  line["id"] = id;
  line.update(problem_fields(p));
  line["prompt"] = gsm_prompt_text(p);
  line["completion"] = gsm_completion_text(p);
  return line.dump();
}

namespace {

/// The integer after the last "Answer: " if it is a plain integer in 0..1000 (a trailing "." and
/// spaces are allowed), else -1.
int64_t official_answer(const std::string& solution) {
  const size_t at = solution.rfind("Answer: ");
  if (at == std::string::npos) return -1;
  std::string rest = solution.substr(at + 8);
  while (!rest.empty() && (rest.back() == '.' || rest.back() == ' ' || rest.back() == '\n')) {
    rest.pop_back();
  }
  if (rest.empty() || rest.size() > 4) return -1;
  for (char c : rest) {
    if (c < '0' || c > '9') return -1;
  }
  const int64_t v = std::stoll(rest);
  return v <= GsmTokenizer::kMaxNumber ? v : -1;
}

std::string canonical_mode(const std::string& mode) {
  if (mode == "normalforward") return "forward";
  if (mode == "forwardreverse") return "reverse";
  return mode;
}

std::string canonical_template(const std::string& name) {
  if (name == "crazy_zootopia") return "zoo";
  if (name == "teachers_in_school") return "teachers";
  if (name == "movie_festival_awards") return "movies";
  return name;
}

}  // namespace

GsmOfficialData read_gsm_official_jsonl(const std::string& path) {
  std::ifstream in = detail::open_data_file(path, "GSM-Infinite data file");
  GsmOfficialData data;
  std::string text;
  int64_t lines = 0;
  for (int64_t line_no = 1; detail::read_line(in, text, path + ":" + std::to_string(line_no));
       ++line_no) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++lines;
    const std::string where = path + ":" + std::to_string(line_no);
    const nlohmann::json obj = detail::parse_object_line(text, where);
    auto string_field = [&](const char* key, bool required) -> std::string {
      if (!obj.contains(key)) {
        if (required) throw std::runtime_error(where + ": missing field '" + key + "'");
        return "";
      }
      if (!obj[key].is_string())
        throw std::runtime_error(where + ": field '" + key + "' is not a string");
      return obj[key].get<std::string>();
    };
    // op and d are integers in the generator's files and sometimes strings on HF.
    auto int_field = [&](const char* key, bool required) -> int64_t {
      if (!obj.contains(key)) {
        if (required) throw std::runtime_error(where + ": missing field '" + key + "'");
        return 0;
      }
      const auto& v = obj[key];
      if (v.is_number_integer()) return v.get<int64_t>();
      if (v.is_string()) {
        try {
          size_t used = 0;
          const int64_t x = std::stoll(v.get<std::string>(), &used);
          if (used == v.get<std::string>().size()) return x;
        } catch (const std::exception&) {
        }
      }
      throw std::runtime_error(where + ": field '" + key + "' = " + v.dump() +
                               " is not an integer");
    };
    GsmProblem p;
    p.problem = string_field("problem", true);
    p.question = string_field("question", true);
    // hypnos's own text records (gsm_text_jsonl) carry the answer instead of a solution.
    const bool has_solution = obj.contains("solution") || !obj.contains("answer");
    const std::string solution = has_solution ? string_field("solution", true) : "";
    p.op = int_field("op", true);
    p.mode = canonical_mode(string_field("mode", false));
    p.template_name = canonical_template(string_field("template", false));
    p.d = int_field("d", false);
    if (has_solution) {
      p.answer = official_answer(solution);
    } else {
      p.answer = int_field("answer", true);
      if (p.answer > GsmTokenizer::kMaxNumber) p.answer = -1;
    }
    if (p.answer < 0) {
      ++data.dropped;
      continue;
    }
    data.problems.push_back(std::move(p));
  }
  if (lines == 0) throw std::runtime_error(path + ": no problems (only blank lines)");
  return data;
}

}  // namespace hypnos::tasks
