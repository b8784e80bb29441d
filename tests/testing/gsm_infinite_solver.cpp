// Independent GSM-Infinite solver (docs/tasks.md 3.4): every value is an integer polynomial in the
// one unknown x (the subject that "is greater than 0"), so forward and reverse problems share one
// evaluator; reverse problems then solve p(x) = V for a degree-1 p.
#include "testing/gsm_infinite_solver.h"

#include <set>

#include "hypnos/tasks/gsm_infinite_templates.h"

namespace hypnos::tasks {
namespace {

enum class Kind { kCount, kAvg, kTotal };

/// k, k plus Body, k times Body or Body; Body = one ref, a sum of refs or a difference of two.
struct Expr {
  bool has_int = false;
  int64_t k = 0;
  enum class Op { kNone, kPlus, kTimes } op = Op::kNone;
  bool difference = false;
  std::vector<std::string> refs;  ///< entity keys
};

struct Entity {
  Kind kind = Kind::kCount;
  std::optional<Expr> definition;
  std::optional<int64_t> observed;  ///< reverse mode: a bare "equals V" that is not a definition
  bool is_x = false;
};

using Poly = std::vector<int64_t>;  // coefficients of x^0, x^1, ...

void check_overflow(bool overflow) {
  if (overflow) throw std::runtime_error("gsm solver: integer overflow in a value");
}
Poly trim(Poly p) {
  while (p.size() > 1 && p.back() == 0) p.pop_back();
  return p;
}
Poly add(const Poly& a, const Poly& b, int64_t sign = 1) {
  Poly r(std::max(a.size(), b.size()), 0);
  for (size_t i = 0; i < r.size(); ++i) {
    const int64_t x = i < a.size() ? a[i] : 0, y = i < b.size() ? b[i] : 0;
    check_overflow(__builtin_add_overflow(x, sign * y, &r[i]));
  }
  return trim(r);
}
Poly mul(const Poly& a, const Poly& b) {
  Poly r(a.size() + b.size() - 1, 0);
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < b.size(); ++j) {
      int64_t m = 0;
      check_overflow(__builtin_mul_overflow(a[i], b[j], &m));
      check_overflow(__builtin_add_overflow(r[i + j], m, &r[i + j]));
    }
  }
  return trim(r);
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

std::optional<int64_t> parse_int(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

/// The part after the last " in " (the top of a count or a total).
std::string_view top_of(std::string_view key) {
  const size_t at = key.rfind(" in ");
  return at == std::string_view::npos ? std::string_view{} : key.substr(at + 4);
}

class Solver {
 public:
  Solver(std::string_view problem, std::string_view question) {
    for (const GsmTemplate& t : gsm_templates()) cat2_.insert(t.cat2);
    size_t begin = 0;
    while (begin < problem.size()) {
      size_t end = problem.find(". ", begin);
      if (end == std::string_view::npos) end = problem.size();
      std::string_view sentence = problem.substr(begin, end - begin);
      while (!sentence.empty() && (sentence.back() == '.' || sentence.back() == ' ')) {
        sentence.remove_suffix(1);
      }
      while (!sentence.empty() && sentence.front() == ' ') sentence.remove_prefix(1);
      if (!sentence.empty()) parse_sentence(sentence);
      begin = end + 2;
    }
    parse_question(question);
  }

  GsmSolution solve() {
    GsmSolution s;
    std::string x_key, observed_key;
    for (auto& [key, e] : entities_) {
      if (e.is_x && e.definition && e.definition->refs.empty() && !e.observed) {
        e.observed = e.definition->k;  // the question's own subject observed directly
        e.definition.reset();
      }
      if (e.is_x) {
        if (!x_key.empty())
          throw std::runtime_error("gsm solver: two unknowns: " + x_key + ", " + key);
        x_key = key;
      }
      if (e.observed) {
        if (!observed_key.empty()) {
          throw std::runtime_error("gsm solver: two observed values: " + observed_key + ", " + key);
        }
        observed_key = key;
      }
    }
    s.reverse = !x_key.empty();
    if (!s.reverse) {
      const Poly p = value(question_);
      if (p.size() != 1) throw std::runtime_error("gsm solver: the question depends on an unknown");
      s.answer = p[0];
      s.op = op_of_closure(question_);
      return s;
    }
    if (observed_key.empty())
      throw std::runtime_error("gsm solver: reverse problem without an observed value");
    if (question_ != x_key) {
      throw std::runtime_error("gsm solver: the question asks about '" + question_ +
                               "', not the unknown '" + x_key + "'");
    }
    const Poly p = value(observed_key);
    const int64_t v = *entities_.at(observed_key).observed;
    if (p.size() != 2) {
      throw std::runtime_error("gsm solver: the observed value of '" + observed_key +
                               "' has degree " + std::to_string(p.size() - 1) +
                               " in x, expected 1");
    }
    if ((v - p[0]) % p[1] != 0 || (v - p[0]) / p[1] < 1) {
      throw std::runtime_error("gsm solver: " + std::to_string(p[1]) + " x + " +
                               std::to_string(p[0]) + " = " + std::to_string(v) +
                               " has no integer root x >= 1");
    }
    s.answer = (v - p[0]) / p[1];
    s.op = op_of_closure(observed_key);
    return s;
  }

 private:
  [[noreturn]] static void bad(std::string_view what, std::string_view text) {
    throw std::invalid_argument("gsm solver: " + std::string(what) + ": '" + std::string(text) +
                                "'");
  }

  /// "number of ITEM in TOP" | "average ..." | "total ..." (after "the "): its key and kind.
  static std::pair<std::string, Kind> entity(std::string_view text) {
    if (starts_with(text, "number of ")) {
      text.remove_prefix(10);
      if (top_of(text).empty()) bad("a count without ' in '", text);
      return {std::string(text), Kind::kCount};
    }
    if (starts_with(text, "average")) {
      if (text.find(" per ") == std::string_view::npos) bad("an average without ' per '", text);
      return {std::string(text), Kind::kAvg};
    }
    if (starts_with(text, "total")) {
      if (top_of(text).empty()) bad("a total without ' in '", text);
      return {std::string(text), Kind::kTotal};
    }
    bad("not a count, average or total", text);
  }

  /// "the ..." reference.
  static std::string ref(std::string_view text) {
    if (!starts_with(text, "the ")) bad("a reference must start with 'the '", text);
    return entity(text.substr(4)).first;
  }

  static Expr expression(std::string_view text) {
    Expr e;
    const size_t space = text.find(' ');
    if (auto k = parse_int(text.substr(0, space))) {
      e.has_int = true;
      e.k = *k;
      if (space == std::string_view::npos) return e;
      text.remove_prefix(space + 1);
      if (starts_with(text, "plus ")) {
        e.op = Expr::Op::kPlus;
        text.remove_prefix(5);
      } else if (starts_with(text, "times ")) {
        e.op = Expr::Op::kTimes;
        text.remove_prefix(6);
      } else {
        bad("expected 'plus' or 'times' after a number", text);
      }
    }
    auto split_and = [&](std::string_view body) {
      const size_t at = body.find(" and ");
      if (at == std::string_view::npos || body.find(" and ", at + 1) != std::string_view::npos) {
        bad("expected exactly one ' and '", body);
      }
      e.refs = {ref(body.substr(0, at)), ref(body.substr(at + 5))};
    };
    if (starts_with(text, "the sum of ")) {
      text.remove_prefix(11);
      if (text.find(", and ") != std::string_view::npos) {
        size_t begin = 0;
        for (;;) {
          const size_t comma = text.find(", ", begin);
          std::string_view part = text.substr(
              begin, comma == std::string_view::npos ? std::string_view::npos : comma - begin);
          if (comma == std::string_view::npos) {
            if (!starts_with(part, "and ")) bad("a list of three or more must end ', and'", text);
            e.refs.push_back(ref(part.substr(4)));
            break;
          }
          e.refs.push_back(ref(part));
          begin = comma + 2;
        }
      } else {
        split_and(text);
      }
    } else if (starts_with(text, "the difference between ")) {
      e.difference = true;
      split_and(text.substr(23));
    } else {
      e.refs = {ref(text)};
    }
    return e;
  }

  Entity& subject(std::string_view text, std::string_view sentence) {
    if (!starts_with(text, "The ")) bad("a sentence must start with 'The '", sentence);
    auto [key, kind] = entity(text.substr(4));
    Entity& e = entities_[key];
    e.kind = kind;
    return e;
  }

  void parse_sentence(std::string_view s) {
    static constexpr std::string_view kExists = " exists, and its number is greater than 0";
    static constexpr std::string_view kGreater = " is greater than 0";
    if (ends_with(s, kExists) || ends_with(s, kGreater)) {
      const size_t n = ends_with(s, kExists) ? kExists.size() : kGreater.size();
      subject(s.substr(0, s.size() - n), s).is_x = true;
      return;
    }
    const size_t at = s.find(" equals ");
    if (at == std::string_view::npos) bad("expected ' equals '", s);
    Entity& e = subject(s.substr(0, at), s);
    Expr expr = expression(s.substr(at + 8));
    const bool bare = expr.has_int && expr.refs.empty();
    // Totals have no defining sentence, so one of theirs is an observation; an instance may carry
    // a second, bare-number sentence that observes it.
    if (e.kind == Kind::kTotal) {
      if (!bare || e.observed) bad("a total can only be observed once, as a number", s);
      e.observed = expr.k;
    } else if (!e.definition) {
      e.definition = std::move(expr);
    } else if (e.observed || bare == e.definition->refs.empty()) {
      bad("a second sentence about one subject must pair a bare number with a definition", s);
    } else if (bare) {
      e.observed = expr.k;
    } else {
      e.observed = e.definition->k;  // the earlier, bare sentence was the observation
      e.definition = std::move(expr);
    }
  }

  void parse_question(std::string_view q) {
    if (starts_with(q, "What is the ") && ends_with(q, "?")) {
      question_ = entity(q.substr(12, q.size() - 13)).first;
      return;
    }
    if (starts_with(q, "How many ") && ends_with(q, " have?")) {
      const std::string_view body = q.substr(9, q.size() - 15);
      const size_t at = body.find(" does ");
      if (at == std::string_view::npos) bad("expected ' does '", q);
      question_ = std::string(body.substr(0, at)) + " in " + std::string(body.substr(at + 6));
      return;
    }
    bad("not a question of the grammar", q);
  }

  /// A subject's entity; totals without a sentence are implicit (their rule is the sum).
  const Entity& get(const std::string& key) const {
    static const Entity kImplicitTotal{Kind::kTotal, std::nullopt, std::nullopt, false};
    const auto it = entities_.find(key);
    if (it != entities_.end()) return it->second;
    if (starts_with(key, "total")) return kImplicitTotal;
    throw std::runtime_error("gsm solver: '" + key + "' is never defined");
  }

  /// Direct dependencies and own op count (docs/tasks.md 3.4 solver step 7).
  std::pair<std::vector<std::string>, int64_t> deps(const std::string& key) const {
    const Entity& e = get(key);
    if (e.is_x) return {{}, 1};
    if (e.kind != Kind::kTotal) {
      if (!e.definition) throw std::runtime_error("gsm solver: '" + key + "' has no definition");
      return {e.definition->refs,
              static_cast<int64_t>(e.definition->refs.size()) + (e.definition->has_int ? 1 : 0)};
    }
    const bool cat2 = is_cat2(key);
    std::vector<std::string> out;
    const std::vector<std::string> counts = counts_in(key);
    for (const std::string& c : counts) {
      out.push_back(c);
      if (cat2) out.push_back(average_of(c));
    }
    const int64_t items = static_cast<int64_t>(counts.size());
    return {out, cat2 ? 2 * items : items};
  }

  /// "CAT2 in T" sums count x average; any other total ("CAT1 in T") sums counts.
  bool is_cat2(const std::string& total) const {
    const std::string_view top = top_of(total);
    return cat2_.count(total.substr(0, total.size() - top.size() - 4)) > 0;
  }

  /// The counts whose subject ends in " in T", T the top of `total`.
  std::vector<std::string> counts_in(const std::string& total) const {
    std::vector<std::string> out;
    for (const auto& [k, c] : entities_) {
      if (c.kind == Kind::kCount && top_of(k) == top_of(total)) out.push_back(k);
    }
    if (out.empty()) throw std::runtime_error("gsm solver: '" + total + "' sums no counts");
    return out;
  }

  /// The key of "AVG per <count>": the one average whose part after " per " is the count.
  std::string average_of(const std::string& count) const {
    std::string found;
    for (const auto& [k, e] : entities_) {
      if (e.kind == Kind::kAvg && ends_with(k, " per " + count)) {
        if (!found.empty())
          throw std::runtime_error("gsm solver: two averages per '" + count + "'");
        found = k;
      }
    }
    if (found.empty()) throw std::runtime_error("gsm solver: no average per '" + count + "'");
    return found;
  }

  Poly value(const std::string& key) {
    if (const auto it = memo_.find(key); it != memo_.end()) return it->second;
    if (!visiting_.insert(key).second)
      throw std::runtime_error("gsm solver: cycle through '" + key + "'");
    const Entity& e = get(key);
    Poly p;
    if (e.is_x) {
      p = {0, 1};
    } else if (e.kind == Kind::kTotal) {
      const bool cat2 = is_cat2(key);
      p = {0};
      for (const std::string& c : counts_in(key)) {
        p = add(p, cat2 ? mul(value(c), value(average_of(c))) : value(c));
      }
    } else {
      const Expr& x = *e.definition;
      Poly body{0};
      if (x.difference) {
        body = add(value(x.refs[0]), value(x.refs[1]), -1);
      } else {
        for (const std::string& r : x.refs) body = add(body, value(r));
      }
      const Poly k{x.k};
      if (!x.has_int) {
        p = body;
      } else if (x.op == Expr::Op::kNone) {
        p = k;
      } else {
        p = x.op == Expr::Op::kPlus ? add(k, body) : mul(k, body);
      }
    }
    visiting_.erase(key);
    return memo_[key] = p;
  }

  int64_t op_of_closure(const std::string& root) const {
    std::set<std::string> seen{root};
    std::vector<std::string> stack{root};
    int64_t op = 0;
    while (!stack.empty()) {
      const std::string key = stack.back();
      stack.pop_back();
      auto [d, own] = deps(key);
      op += own;
      for (std::string& k : d) {
        if (seen.insert(k).second) stack.push_back(std::move(k));
      }
    }
    return op;
  }

  std::map<std::string, Entity> entities_;
  std::set<std::string> cat2_;
  std::string question_;
  std::map<std::string, Poly> memo_;
  std::set<std::string> visiting_;
};

}  // namespace

GsmSolution solve_gsm(std::string_view problem, std::string_view question) {
  return Solver(problem, question).solve();
}

}  // namespace hypnos::tasks
