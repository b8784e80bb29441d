// GSM-Infinite generator (docs/tasks.md 3.1, adapted by 3.4): structure graph, necessary parameters
// in topological order, operations, unnecessary parameters, sentences, question, checks and noise,
// every draw from the example's stream; a failed check rejects the attempt and the next one
// continues on the same stream.
#include "hypnos/tasks/gsm_infinite_generator.h"

#include <cstdlib>

#include "hypnos/tasks/gsm_infinite_templates.h"
#include "hypnos/version.h"
#include "tasks/text_lines.h"

namespace hypnos::tasks {
namespace {

constexpr int kRng = -1;  // the "random constant" pseudo-dependency

/// Thrown for a failed check; the attempt loop catches only this, so real bugs still surface.
struct Reject {
  const char* why;
};

void require(bool ok, const char* why) {
  if (!ok) throw Reject{why};
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}
bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

enum class Kind { kCount, kAvg, kAlias, kCat1, kCat2 };

bool is_abstract(Kind k) {
  return k == Kind::kAlias || k == Kind::kCat1 || k == Kind::kCat2;
}

struct Node {
  Kind kind;
  std::string name;  ///< "A in T", "AVG per A in T", "CAT1 in T", ...
  std::string item, top;
  std::vector<int> implicit;  ///< abstracts: what their rule reads
};

/// N(x): "the x" for averages and totals, "the number of x" otherwise.
std::string ref_text(const std::string& name) {
  if (starts_with(name, "average") || starts_with(name, "total")) return "the " + name;
  return "the number of " + name;
}

std::string capitalised(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

/// A value as an integer polynomial in the reverse-mode unknown x (coefficients of x^0, x^1, ...).
using Poly = std::vector<int64_t>;

Poly trim(Poly p) {
  while (p.size() > 1 && p.back() == 0) p.pop_back();
  return p;
}
Poly add(const Poly& a, const Poly& b, int64_t sign) {
  Poly r(std::max(a.size(), b.size()), 0);
  for (size_t i = 0; i < r.size(); ++i) {
    const int64_t x = i < a.size() ? a[i] : 0, y = i < b.size() ? b[i] : 0;
    require(!__builtin_add_overflow(x, sign * y, &r[i]), "overflow");
  }
  return trim(r);
}
Poly mul(const Poly& a, const Poly& b) {
  Poly r(a.size() + b.size() - 1, 0);
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < b.size(); ++j) {
      int64_t m = 0;
      require(!__builtin_mul_overflow(a[i], b[j], &m), "overflow");
      require(!__builtin_add_overflow(r[i + j], m, &r[i + j]), "overflow");
    }
  }
  return trim(r);
}

/// The right-hand side of an instance's sentence: k, k plus Body, k times Body, or Body.
struct Rhs {
  bool has_k = false;
  int64_t k = 0;
  bool times = false;
  bool difference = false;
  std::vector<int> refs;
};

/// s by requested op (docs/tasks.md 3.1 "Sizes"): half the script's opmax of that op's bucket.
int64_t size_of_op(int64_t op) {
  if (op <= 1) return 1;
  if (op <= 4) return 2;
  if (op <= 6) return 3;
  if (op <= 9) return 5;
  if (op <= 11) return 8;
  return 10;
}

int64_t pieces(std::string_view text) {
  return static_cast<int64_t>(GsmTokenizer::pieces(text).size());
}

/// One attempt (a call of the original's drawAll / drawAllEquan). Throws Reject.
class Attempt {
 public:
  Attempt(const GsmInfiniteOptions& o, const GsmSpec& spec, const GsmTemplate& t,
          const GsmDistractors& dummy, Stream& rng)
      : o_(o), spec_(spec), t_(t), dummy_(dummy), rng_(rng), d_(spec.d) {}

  GsmGenerated run() {
    // Medium op 1 (docs/tasks.md 3.4): an op-2 attempt with s = 1, asked about its constant
    // topo[0].
    const bool medium_op1 = d_ == 2 && spec_.op == 1;
    const int64_t target_op = medium_op1 ? 2 : spec_.op;
    const int64_t s = size_of_op(spec_.op);
    const bool reverse = spec_.reverse && !medium_op1;
    draw_structure(s, reverse);
    seed_graph();
    order(reverse);
    operations(s);
    unnecessary();
    sentences();
    // Checks: op over topo (aliases excluded, RNG edges counted), values in range.
    int64_t op = 0;
    for (int a : topo_) {
      if (nodes_[a].kind != Kind::kAlias) op += static_cast<int64_t>(deps_[a].size());
    }
    require(op == target_op, "op differs from the requested op");
    std::vector<Poly> constant = values(-1);
    for (int a : topo_) {
      const int64_t v = constant[a][0];
      const std::string& n = nodes_[a].name;
      const bool zero_ok = contains(n, "average") || contains(n, "total") || contains(n, "all");
      require(v <= 1000 && (v >= 1 || (v == 0 && zero_ok)), "a value out of range");
    }
    GsmGenerated out;
    GsmProblem& p = out.problem;
    p.d = d_;
    p.template_name = t_.name;
    p.mode = reverse ? "reverse" : "forward";
    p.op = spec_.op;
    std::vector<std::string> core = text_;
    int asked = topo_.back();
    if (medium_op1) {
      asked = topo_.front();
      require(deps_[asked] == std::vector<int>{kRng}, "topo[0] is not a constant");
      p.answer = constant[asked][0];
    } else if (!reverse) {
      p.answer = constant[asked][0];
    } else {
      // x: the last topo instance that is a constant; Z = topo.back() is observed.
      int x = -1;
      for (int a : topo_) {
        if (!is_abstract(nodes_[a].kind) &&
            (deps_[a].empty() || deps_[a] == std::vector<int>{kRng})) {
          x = a;
        }
      }
      require(x >= 0, "no constant instance for x");
      const int z = topo_.back();
      const std::vector<Poly> in_x = values(x);
      require(in_x[z].size() == 2, "Z is not of degree 1 in x");
      core[sentence_of_[x]] =
          capitalised(ref_text(nodes_[x].name)) + (nodes_[x].kind == Kind::kCount
                                                       ? " exists, and its number is greater than 0"
                                                       : " is greater than 0");
      core.push_back(capitalised(ref_text(nodes_[z].name)) + " equals " +
                     std::to_string(constant[z][0]));
      asked = x;
      p.answer = constant[x][0];
    }
    const Node& q = nodes_[asked];
    p.question = contains(q.name, "average") || contains(q.name, "total")
                     ? "What is the " + q.name + "?"
                     : "How many " + q.item + " does " + q.top + " have?";

    // Length: BOS, question, sentences each with ". ", `answer`, `:`, N.
    int64_t length = 1 + pieces(p.question) + 3;
    for (const std::string& sentence : core) length += pieces(sentence) + 1;
    if (o_.length == GsmLength::kNoise) {
      out.tau = rng_.randint(o_.length_min, o_.length_max);
      int64_t statements = (std::max<int64_t>(out.tau - length, 0) + 19) / 20 + 8;
      for (;;) {
        std::vector<std::string> noise = this->noise(statements);
        rng_.shuffle(noise);
        size_t used = 0;
        int64_t with = length;
        while (used < noise.size() && with < out.tau) with += pieces(noise[used++]) + 1;
        if (with >= out.tau) {
          core.insert(core.end(), noise.begin(), noise.begin() + static_cast<int64_t>(used));
          length = with;
          break;
        }
        statements *= 2;  // ran out of noise: rebuild with twice as many statements
      }
    }
    rng_.shuffle(core);
    for (const std::string& sentence : core) p.problem += sentence + ". ";
    if (!p.problem.empty()) p.problem.pop_back();
    out.length = length;
    return out;
  }

 private:
  // --- Sizes and structure graph (docs/tasks.md 3.1 "Sizes", "Structure graph")
  // ----------------------
  // The docs' names: n, m (the two op budgets), t0, t1 (width draws), w0, w1 (min_width,
  // max_width), e (edge_count), l (layer_size: tops, items), p (grow_chance).
  void draw_structure(int64_t s, bool reverse) {
    abstract_op_limit_ = std::max(rng_.randint(1, s), rng_.randint(1, s));
    graph_op_target_ = rng_.randint(abstract_op_limit_, s);
    const double relative_size = static_cast<double>(s - 1) / 19.0;
    std::vector<double> weights;
    for (double c : {0.1, 0.3, 0.5, 0.7, 0.9})
      weights.push_back(std::exp(-(relative_size - c) * (relative_size - c)));
    int64_t width_draw_a = 1 + static_cast<int64_t>(rng_.weighted(weights));
    int64_t width_draw_b = 1 + static_cast<int64_t>(rng_.weighted(weights));
    if (s <= 5 && !reverse && d_ == 2) {
      width_draw_a = std::max<int64_t>(width_draw_a, 2);
      width_draw_b = std::max<int64_t>(width_draw_b, 2);
    }
    if (s <= 5 && reverse) {
      width_draw_a = std::min<int64_t>(width_draw_a, 3);
      width_draw_b = std::min<int64_t>(width_draw_b, 3);
    }
    const int64_t min_width = std::min(width_draw_a, width_draw_b),
                  max_width = std::max(width_draw_a, width_draw_b);
    const int64_t ip_max = o_.ip_max;
    require((d_ - 1) * min_width <= ip_max, "ip_max below the smallest edge count");
    const int64_t edge_count = std::min({rng_.randint((d_ - 1) * min_width, ip_max),
                                         rng_.randint((d_ - 1) * min_width, ip_max),
                                         max_width * max_width + (d_ == 3 ? max_width : 0)});
    std::array<int64_t, 2> layer_size{min_width, min_width};
    const double grow_chance = rng_.real();
    auto grow = [&] {
      std::vector<int> below;
      for (int i = 0; i < 2; ++i) {
        if (layer_size[i] < max_width) below.push_back(i);
      }
      ++layer_size[below[rng_.below(below.size())]];
    };
    while (!(layer_size[0] == max_width && layer_size[1] == max_width)) {
      if (layer_size[0] * layer_size[1] < edge_count) {
        grow();
      } else if (layer_size[1] == edge_count) {
        break;
      } else if (rng_.coin(grow_chance)) {
        grow();
      } else {
        break;
      }
    }
    // Edges (top index, item index): every item joins a random top, then more up to edge_count.
    std::vector<std::pair<int64_t, int64_t>> edges;
    auto has = [&](int64_t top, int64_t item) {
      return std::find(edges.begin(), edges.end(), std::make_pair(top, item)) != edges.end();
    };
    for (int64_t j = 0; j < layer_size[1]; ++j) edges.emplace_back(rng_.below(layer_size[0]), j);
    for (int64_t tries = 0; static_cast<int64_t>(edges.size()) < edge_count;) {
      require(++tries <= 10 * edge_count, "too many tries to place the structure edges");
      std::vector<int64_t> edgeless;
      for (int64_t i = 0; i < layer_size[0]; ++i) {
        bool any = false;
        for (const auto& ed : edges) any = any || ed.first == i;
        if (!any) edgeless.push_back(i);
      }
      const int64_t top = edgeless.empty() ? static_cast<int64_t>(rng_.below(layer_size[0]))
                                           : edgeless[rng_.below(edgeless.size())];
      const int64_t item = static_cast<int64_t>(rng_.below(layer_size[1]));
      if (!has(top, item)) edges.emplace_back(top, item);
    }
    // Names: each layer a random subcategory, l_i distinct names of it.
    auto names_of = [&](const std::vector<std::vector<std::string>>& groups, int64_t k) {
      const auto& group = groups[rng_.below(groups.size())];
      require(static_cast<int64_t>(group.size()) >= k, "a subcategory smaller than its layer");
      return rng_.sample(group, static_cast<size_t>(k));
    };
    const std::vector<std::string> tops = names_of(t_.tops, layer_size[0]);
    const std::vector<std::string> items = names_of(t_.items, layer_size[1]);

    // Parameters: instances per edge, then abstracts per top with an edge.
    std::vector<int> alias_of_edge;
    std::vector<std::vector<int>> counts_of_top(layer_size[0]), pairs_of_top(layer_size[0]);
    for (const auto& [top, item] : edges) {
      const std::string count_name = items[item] + " in " + tops[top];
      const int count = add_node({Kind::kCount, count_name, items[item], tops[top], {}});
      structure_.push_back(count);
      counts_of_top[top].push_back(count);
      if (d_ == 3) {
        const std::string avg_name = t_.avg + " per " + count_name;
        const int avg = add_node({Kind::kAvg, avg_name, items[item], tops[top], {}});
        structure_.push_back(avg);
        const int alias = add_node({Kind::kAlias, avg_name, items[item], tops[top], {avg}});
        alias_of_edge.push_back(alias);
        pairs_of_top[top].insert(pairs_of_top[top].end(), {count, alias});
      }
    }
    level_[1] = alias_of_edge;
    for (int64_t top = 0; top < layer_size[0]; ++top) {
      if (counts_of_top[top].empty()) continue;
      level_[1].push_back(
          add_node({Kind::kCat1, t_.cat1 + " in " + tops[top], "", tops[top], counts_of_top[top]}));
      if (d_ == 3) {
        level_[2].push_back(add_node(
            {Kind::kCat2, t_.cat2 + " in " + tops[top], "", tops[top], pairs_of_top[top]}));
      }
    }
  }

  int add_node(Node node) {
    deps_.push_back(node.implicit);
    nodes_.push_back(std::move(node));
    in_g_.push_back(0);
    return static_cast<int>(nodes_.size()) - 1;
  }

  void join(int a) {
    if (in_g_[a]) return;
    in_g_[a] = 1;
    g_.push_back(a);
  }
  /// a and, for an abstract, what it reads, recursively (instances join without dependencies).
  void join_closure(int a) {
    if (in_g_[a]) return;
    join(a);
    for (int b : nodes_[a].implicit) join_closure(b);
  }
  std::vector<int> closure(int a) const {
    std::vector<int> out{a};
    for (size_t i = 0; i < out.size(); ++i) {
      for (int b : nodes_[out[i]].implicit) {
        if (!in_g_[b] && std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
      }
    }
    return out;
  }
  int64_t op_of_graph() const {
    int64_t op = 0;
    for (int a : g_) op += static_cast<int64_t>(deps_[a].size());
    return op;
  }
  std::vector<int> missing_instances() const {
    std::vector<int> out;
    for (int a : structure_) {
      if (!in_g_[a]) out.push_back(a);
    }
    return out;
  }

  // --- (N1) seed -----------------------------------------------------------------------------
  void seed_graph() {
    std::array<std::vector<int>, 3> lists = level_;
    for (bool added = true; added;) {
      added = false;
      for (int64_t level = d_ - 1; level >= 1 && !added; --level) {
        std::vector<int>& list = lists[level];
        if (list.empty()) continue;
        const size_t at = rng_.below(list.size());
        const int a = list[at];
        list.erase(list.begin() + static_cast<int64_t>(at));
        if (nodes_[a].implicit.empty()) continue;
        int64_t op = op_of_graph();
        for (int b : closure(a)) {
          if (!in_g_[b]) op += static_cast<int64_t>(deps_[b].size());
        }
        if (op <= abstract_op_limit_) {
          join_closure(a);
          added = true;
        }
      }
    }
    for (int64_t k = std::max<int64_t>(0, graph_op_target_ - op_of_graph() - 1); k > 0; --k) {
      const std::vector<int> missing = missing_instances();
      if (missing.empty()) break;
      join(missing[rng_.below(missing.size())]);
    }
  }

  // --- (N2) order ----------------------------------------------------------------------------
  bool in_topo(int a) const { return std::find(topo_.begin(), topo_.end(), a) != topo_.end(); }
  std::vector<int> output() const {
    std::vector<int> out;
    for (int a : g_) {
      if (!in_topo(a)) out.push_back(a);
    }
    return out;
  }
  static bool depends(const std::vector<int>& deps, int b) {
    return std::find(deps.begin(), deps.end(), b) != deps.end();
  }
  /// next1: needed by topo; next2: needed by no output member.
  std::pair<std::vector<int>, std::vector<int>> nexts(const std::vector<int>& out) const {
    std::vector<int> next1, next2;
    for (int b : out) {
      bool by_topo = false, by_output = false;
      for (int a : topo_) by_topo = by_topo || depends(deps_[a], b);
      for (int a : out) by_output = by_output || depends(deps_[a], b);
      if (by_topo) next1.push_back(b);
      if (!by_output) next2.push_back(b);
    }
    return {next1, next2};
  }
  int biased_pick(const std::vector<int>& candidates, const std::vector<int>& next1) {
    std::vector<double> w;
    for (int c : candidates) {
      const double bias = (is_abstract(nodes_[c].kind) ? 1.0 : 0.0) +
                          (std::find(next1.begin(), next1.end(), c) != next1.end() ? 1.0 : 0.0);
      w.push_back(std::exp(bias * std::abs(rng_.gauss())));
    }
    return candidates[rng_.weighted(w)];
  }

  void order(bool reverse) {
    for (bool first = true;; first = false) {
      std::vector<int> out = output();
      auto [next1, next2] = nexts(out);
      int param0 = -1;
      if (first) {
        require(!next2.empty(), "nothing to ask");
        if (!reverse) {
          param0 = next2[rng_.below(next2.size())];
        } else {
          std::vector<int> ordered;
          for (int pass = 0; pass < 2; ++pass) {
            for (int b : next2) {
              if (is_abstract(nodes_[b].kind) == (pass == 0)) ordered.push_back(b);
            }
          }
          for (int b : ordered) {
            if (param0 < 0 && contains(nodes_[b].name, cue())) param0 = b;
          }
          for (int b : ordered) {
            if (param0 < 0 && contains(nodes_[b].name, "total")) param0 = b;
          }
          if (param0 < 0) param0 = next2[rng_.below(next2.size())];
        }
      } else {
        std::vector<int> both;
        for (int b : next1) {
          if (std::find(next2.begin(), next2.end(), b) != next2.end()) both.push_back(b);
        }
        require(!both.empty(), "no next parameter");
        param0 = both[rng_.below(both.size())];
      }
      topo_.insert(topo_.begin(), param0);
      out = output();
      if (out.empty()) break;
      std::tie(next1, next2) = nexts(out);
      bool joint = false;
      for (int b : next1) {
        joint = joint || std::find(next2.begin(), next2.end(), b) != next2.end();
      }
      if (!joint) {
        require(!is_abstract(nodes_[param0].kind), "an abstract would need a new dependency");
        deps_[param0].push_back(biased_pick(next2, next1));
      } else if (!is_abstract(nodes_[param0].kind)) {
        const double p0 = rng_.real();
        if (rng_.coin(p0)) deps_[param0].push_back(biased_pick(out, next1));
      }
    }
    if (topo_.size() == 2 && rng_.coin(0.5)) {
      int extra = -1;
      for (int a : g_) {
        if (extra < 0 && !is_abstract(nodes_[a].kind) && !in_topo(a)) extra = a;
      }
      for (int a : structure_) {
        if (extra < 0 && !in_g_[a]) extra = a;
      }
      if (extra >= 0) {
        join(extra);
        if (rng_.coin(0.5)) {
          require(!is_abstract(nodes_[topo_[0]].kind), "topo[0] is abstract");
          deps_[topo_[0]].push_back(extra);
          topo_.insert(topo_.begin(), extra);
        } else {
          deps_[extra].push_back(topo_[1]);
          topo_.push_back(extra);
        }
      }
    }
  }

  const char* cue() const {
    if (t_.name == "zoo") return "animal children";
    if (t_.name == "teachers") return "teachers from all schools";
    return "movie nominations";
  }

  // --- (N3) operations -----------------------------------------------------------------------
  void operations(int64_t s) {
    std::vector<int64_t> c(nodes_.size(), 0), cap(nodes_.size(), 0);
    int64_t sum = 0;
    for (size_t i = 0; i < topo_.size(); ++i) {
      const int a = topo_[i];
      c[a] = static_cast<int64_t>(deps_[a].size());
      cap[a] = std::min<int64_t>(3, std::max<int64_t>(1, static_cast<int64_t>(i)));
      sum += c[a];
    }
    while (sum < s) {
      std::vector<int> open;
      for (int a : topo_) {
        if (!is_abstract(nodes_[a].kind) && c[a] < cap[a]) open.push_back(a);
      }
      require(!open.empty(), "no instance can take another operation");
      ++c[open[rng_.below(open.size())]];
      ++sum;
    }
    for (int a : g_) {
      if (is_abstract(nodes_[a].kind)) continue;
      std::vector<int> pool{kRng};
      for (int b : topo_) {
        if (b == a) break;
        pool.push_back(b);
      }
      int64_t want = c[a] == 1 ? (rng_.coin(0.5) ? 1 : 2) : c[a] + 1;
      want = std::min<int64_t>(want, static_cast<int64_t>(pool.size()));
      bool linked = false;
      for (int b : pool) linked = linked || depends(deps_[a], b);
      if (linked) {  // the original drops the last pool element, not the linked one
        pool.pop_back();
        --want;
      }
      auto link = [&](int b) {
        if (!depends(deps_[a], b)) deps_[a].push_back(b);
      };
      if (want == static_cast<int64_t>(pool.size())) {
        for (int b : pool) link(b);
        continue;
      }
      if (rng_.coin(0.5)) {
        link(kRng);
        --want;
      }
      pool.erase(std::remove(pool.begin(), pool.end(), kRng), pool.end());
      for (int b : rng_.sample(pool, static_cast<size_t>(std::max<int64_t>(want, 0)))) link(b);
    }
    // An instance reading both an average and its alias says the same name twice: keep the alias.
    for (int a : topo_) {
      if (is_abstract(nodes_[a].kind)) continue;
      std::vector<int>& deps = deps_[a];
      for (int b : std::vector<int>(deps)) {
        if (b != kRng && nodes_[b].kind == Kind::kAlias && depends(deps, nodes_[b].implicit[0])) {
          deps.erase(std::find(deps.begin(), deps.end(), nodes_[b].implicit[0]));
        }
      }
    }
  }

  // --- unnecessary parameters ----------------------------------------------------------------
  void unnecessary() {
    std::vector<int> ind_list;
    for (std::vector<int> missing = missing_instances(); !missing.empty();
         missing = missing_instances()) {
      std::vector<int> known = g_;
      for (size_t b = 0; b < nodes_.size(); ++b) {
        if (in_g_[b] || !is_abstract(nodes_[b].kind)) continue;
        bool any = false;
        for (int x : nodes_[b].implicit) any = any || in_g_[x];
        if (any) known.push_back(static_cast<int>(b));
      }
      const int a = missing[rng_.below(missing.size())];
      join(a);
      std::vector<int> pool;
      if (rng_.coin(0.5)) {
        pool = ind_list;
        ind_list.push_back(a);
      } else {
        pool = known;
      }
      pool.push_back(kRng);
      int64_t want = 1;
      while (want < std::min<int64_t>(4, static_cast<int64_t>(pool.size())) && rng_.coin(0.5)) {
        ++want;
      }
      std::vector<int> chosen;
      if (want == static_cast<int64_t>(pool.size())) {
        chosen = pool;
      } else {
        if (rng_.coin(0.5)) {
          chosen.push_back(kRng);
          --want;
        }
        pool.pop_back();  // RNG is last
        for (int b : rng_.sample(pool, static_cast<size_t>(want))) chosen.push_back(b);
      }
      for (int b : chosen) {
        if (b != kRng && !in_g_[b]) join_closure(b);
        if (!depends(deps_[a], b)) deps_[a].push_back(b);
      }
    }
  }

  // --- sentences -----------------------------------------------------------------------------
  /// " N(b)", " the sum of ...", " the difference between ..." for dependencies `refs`; draws the
  /// sum-or-difference coin for two.
  std::string body(const std::vector<int>& refs, Rhs* rhs) {
    if (refs.size() == 1) return " " + ref_text(nodes_[refs[0]].name);
    if (refs.size() == 2) {
      const bool sum = rng_.coin(0.5);
      if (rhs) rhs->difference = !sum;
      return (sum ? " the sum of " : " the difference between ") + ref_text(nodes_[refs[0]].name) +
             " and " + ref_text(nodes_[refs[1]].name);
    }
    std::string text = " the sum of ";
    for (size_t i = 0; i < refs.size(); ++i) {
      text += (i + 1 == refs.size() ? "and " : "") + ref_text(nodes_[refs[i]].name) +
              (i + 1 == refs.size() ? "" : ", ");
    }
    return text;
  }

  void sentences() {
    const int64_t r = o_.number_range;
    rhs_.assign(nodes_.size(), Rhs{});
    sentence_of_.assign(nodes_.size(), -1);
    for (int a : g_) {
      if (is_abstract(nodes_[a].kind)) continue;
      Rhs& rhs = rhs_[a];
      std::string text = capitalised(ref_text(nodes_[a].name)) + " equals";
      for (int b : deps_[a]) {
        if (b != kRng) rhs.refs.push_back(b);
      }
      if (depends(deps_[a], kRng) || deps_[a].empty()) {
        const bool c = deps_[a].empty() || rng_.coin(0.5);
        rhs.has_k = true;
        rhs.k = c ? rng_.randint(1, r - 1) : rng_.randint(2, r - 1);
        text += " " + std::to_string(rhs.k);
        if (!rhs.refs.empty()) {
          rhs.times = !c;
          text += c ? " plus" : " times";
        }
      }
      if (!rhs.refs.empty()) text += body(rhs.refs, &rhs);
      sentence_of_[a] = static_cast<int>(text_.size());
      text_.push_back(std::move(text));
    }
  }

  /// Values of topo members as polynomials in node x (x < 0: no unknown, all constants).
  std::vector<Poly> values(int x) const {
    std::vector<Poly> v(nodes_.size());
    auto get = [&](int b) -> const Poly& {
      // Topo order puts every dependency first; anything else is a generator bug, not a reject.
      if (v[b].empty()) {
        throw std::logic_error("gsm generator: '" + nodes_[b].name +
                               "' is read before it is evaluated");
      }
      return v[b];
    };
    for (int a : topo_) {
      const Node& n = nodes_[a];
      Poly p{0};
      if (a == x) {
        p = {0, 1};
      } else if (n.kind == Kind::kAlias) {
        p = get(n.implicit[0]);
      } else if (n.kind == Kind::kCat1) {
        for (int b : n.implicit) p = add(p, get(b), 1);
      } else if (n.kind == Kind::kCat2) {
        for (size_t i = 0; i + 1 < n.implicit.size(); i += 2) {
          p = add(p, mul(get(n.implicit[i]), get(n.implicit[i + 1])), 1);
        }
      } else {
        const Rhs& rhs = rhs_[a];
        Poly b{0};
        for (size_t i = 0; i < rhs.refs.size(); ++i) {
          b = add(b, get(rhs.refs[i]), rhs.difference && i == 1 ? -1 : 1);
        }
        if (!rhs.has_k) {
          p = b;
        } else if (rhs.refs.empty()) {
          p = {rhs.k};
        } else {
          p = rhs.times ? mul({rhs.k}, b) : add({rhs.k}, b, 1);
        }
      }
      v[a] = p;
    }
    return v;
  }

  // --- noise ("spider" distractors, docs/tasks.md 3.1 and 3.4 "Length")
  // ----------------------------
  std::vector<std::string> noise(int64_t statements) {
    const int64_t abstracts = statements / 20 + 1;
    const int64_t groups = abstracts / 20 + 1;
    require(groups <= static_cast<int64_t>(dummy_.tops.size()), "too few distractor tops");
    std::vector<int64_t> top_groups(dummy_.tops.size());
    for (size_t i = 0; i < top_groups.size(); ++i) top_groups[i] = static_cast<int64_t>(i);
    std::vector<std::string> pool;
    for (int64_t g : rng_.sample(top_groups, static_cast<size_t>(groups))) {
      pool.insert(pool.end(), dummy_.tops[g].begin(), dummy_.tops[g].end());
    }
    const std::vector<std::string> tops = rng_.sample(pool, static_cast<size_t>(abstracts));
    const std::string& cat = d_ == 3 ? t_.cat2 : t_.cat1;

    struct NoiseNode {
      std::string name;
      int64_t top;
      std::vector<std::string> refs;  // names of dependencies
    };
    std::vector<NoiseNode> nodes;
    const int64_t counts = d_ == 3 ? statements / 2 : statements;
    std::vector<int64_t> item_groups(dummy_.items.size());
    for (size_t i = 0; i < item_groups.size(); ++i) item_groups[i] = static_cast<int64_t>(i);
    require(item_groups.size() >= 2, "too few distractor item groups");
    for (int64_t u = 0; u < abstracts && static_cast<int64_t>(nodes.size()) < counts; ++u) {
      std::vector<std::string> items;
      for (int64_t g : rng_.sample(item_groups, 2)) {
        items.insert(items.end(), dummy_.items[g].begin(), dummy_.items[g].end());
      }
      rng_.shuffle(items);
      for (const std::string& item : items) {
        if (static_cast<int64_t>(nodes.size()) >= counts) break;
        nodes.push_back({item + " in " + tops[u], u, {}});
      }
    }
    // A shortfall of items (every top used up) reads as running out: the caller doubles S.
    if (static_cast<int64_t>(nodes.size()) < counts) return {};
    if (d_ == 3) {
      for (size_t i = 0, n = nodes.size(); i < n; ++i) {
        nodes.push_back({t_.avg + " per " + nodes[i].name, nodes[i].top, {}});
      }
    }
    std::vector<int> order(nodes.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    rng_.shuffle(order);
    for (int i : order) {
      const size_t k = std::min<size_t>(rng_.coin(0.5) ? 1 : 2, g_.size());
      for (int b : rng_.sample(g_, k)) nodes[i].refs.push_back(nodes_[b].name);
    }
    std::vector<char> available(tops.size(), 1);
    rng_.shuffle(order);
    for (int i : order) {
      NoiseNode& n = nodes[i];
      if (n.refs.size() != 1 || !available[n.top]) continue;
      for (size_t u = 0; u < tops.size(); ++u) {
        if (static_cast<int64_t>(u) != n.top && available[u]) {
          n.refs.push_back(cat + " in " + tops[u]);
          available[u] = 0;
          break;
        }
      }
    }
    std::vector<std::string> out;
    for (const NoiseNode& n : nodes) {
      std::string text = capitalised(ref_text(n.name)) + " equals ";
      if (n.refs.size() == 1) {
        text += ref_text(n.refs[0]);
      } else {
        text += (rng_.coin(0.5) ? "the sum of " : "the difference between ") + ref_text(n.refs[0]) +
                " and " + ref_text(n.refs[1]);
      }
      out.push_back(std::move(text));
    }
    return out;
  }

  const GsmInfiniteOptions& o_;
  const GsmSpec& spec_;
  const GsmTemplate& t_;
  const GsmDistractors& dummy_;
  Stream& rng_;
  const int64_t d_;
  // docs/tasks.md 3.1's n (the op limit of the abstracts seeded into the graph) and m (the op count
  // that missing instances then fill the graph up to).
  int64_t abstract_op_limit_ = 0, graph_op_target_ = 0;

  std::vector<Node> nodes_;
  std::vector<std::vector<int>> deps_;  ///< deps_[a]: what a depends on (kRng: a constant)
  std::vector<int> structure_;          ///< instances in edge order
  std::array<std::vector<int>, 3> level_;
  std::vector<int> g_;  ///< the dependency graph's members, in insertion order
  std::vector<char> in_g_;
  std::vector<int> topo_;
  std::vector<Rhs> rhs_;
  std::vector<std::string> text_;  ///< one sentence per instance of G
  std::vector<int> sentence_of_;
};

}  // namespace

std::string gsm_data_dir(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (const char* env = std::getenv("HYPNOS_DATA_DIR"); env && *env) {
    return std::string(env) + "/gsm_infinite";
  }
  // An installed hypnos reads its installed copy; a build tree reads the source tree it came from.
  const std::string installed = std::string(kInstalledDataDir) + "/gsm_infinite";
  std::error_code ec;
  if (std::filesystem::is_directory(installed, ec)) return installed;
  return std::string(kSourceDataDir) + "/gsm_infinite";
}

std::vector<std::vector<std::string>> read_gsm_name_list(const std::string& path) {
  std::ifstream in = detail::open_data_file(path, "GSM-Infinite name list",
                                            " (set task.data_dir or HYPNOS_DATA_DIR)");
  std::vector<std::vector<std::string>> groups;
  std::string line;
  int64_t line_no = 0;
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(path + ":" + std::to_string(line_no) + ": " + what);
  };
  while (detail::read_line(in, line, path + ":" + std::to_string(line_no + 1))) {
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (!groups.empty() && groups.back().empty()) fail("empty subcategory before this one");
      groups.emplace_back();
      continue;
    }
    const std::string name = "name " + detail::shorten(line);
    if (groups.empty()) fail(name + " before any '# subcategory' line");
    for (unsigned char ch : line) {
      if (ch >= 0x80 ||
          std::string_view(".,?:;()!").find(static_cast<char>(ch)) != std::string_view::npos) {
        fail(name + " has a non-ASCII byte or one of . , ? : ; ( ) !");
      }
    }
    std::istringstream words(line);
    for (std::string w; words >> w;) {
      std::transform(w.begin(), w.end(), w.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (w == "in" || w == "and" || w == "per" || w == "equals") {
        fail(name + " has the word '" + w + "', which the sentences use");
      }
    }
    groups.back().push_back(line);
  }
  if (groups.empty() || groups.back().empty()) fail("no names (or an empty last subcategory)");
  return groups;
}

GsmDistractors load_gsm_distractors(const std::string& dir, const std::string& template_name) {
  return {read_gsm_name_list(dir + "/" + template_name + "_tops.txt"),
          read_gsm_name_list(dir + "/" + template_name + "_items.txt")};
}

GsmGenerator::GsmGenerator(const GsmInfiniteOptions& options,
                           std::vector<GsmDistractors> distractors)
    : options_(options), distractors_(std::move(distractors)) {
  const size_t n = gsm_templates().size();
  if (distractors_.size() != n) {
    throw std::invalid_argument("GsmGenerator: " + std::to_string(distractors_.size()) +
                                " distractor sets, expected one per template (" +
                                std::to_string(n) + ")");
  }
  if (options.length_min > options.length_max) {
    throw std::invalid_argument(
        "task.length_min = " + std::to_string(options.length_min) +
        ": expected <= task.length_max = " + std::to_string(options.length_max));
  }
}

GsmSpec GsmGenerator::draw_spec(Split split, uint64_t index, Stream& stream) const {
  GsmSpec spec;
  spec.d = options_.d;
  spec.template_index = static_cast<int64_t>(
      stream.weighted({options_.weight_zoo, options_.weight_teachers, options_.weight_movies}));
  spec.reverse = stream.coin(options_.reverse_fraction);
  spec.op = split == Split::kTrain
                ? 1 + static_cast<int64_t>(stream.below(static_cast<uint64_t>(options_.op_max)))
                : 1 + static_cast<int64_t>(index % static_cast<uint64_t>(options_.op_max));
  if (spec.d == 2 && spec.op == 1) spec.reverse = false;  // medium op 1 is forward only
  return spec;
}

GsmGenerated GsmGenerator::generate(const GsmSpec& spec, Stream& stream) const {
  const auto& templates = gsm_templates();
  if (spec.d != 2 && spec.d != 3) {
    throw std::invalid_argument("gsm spec d = " + std::to_string(spec.d) + ": expected 2 or 3");
  }
  if (spec.op < 1 || spec.op > 15) {
    throw std::invalid_argument("gsm spec op = " + std::to_string(spec.op) + ": expected 1..15");
  }
  if (spec.template_index < 0 || spec.template_index >= static_cast<int64_t>(templates.size())) {
    throw std::invalid_argument("gsm spec template_index = " + std::to_string(spec.template_index) +
                                ": expected 0..2");
  }
  const GsmTemplate& t = templates[spec.template_index];
  for (int64_t attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    try {
      GsmGenerated out =
          Attempt(options_, spec, t, distractors_[spec.template_index], stream).run();
      out.attempts = attempt;
      return out;
    } catch (const Reject&) {
    }
  }
  throw std::runtime_error("gsm_infinite: no problem with d = " + std::to_string(spec.d) +
                           ", op = " + std::to_string(spec.op) + ", mode " +
                           (spec.reverse ? "reverse" : "forward") + ", template " + t.name +
                           " after task.max_attempts = " + std::to_string(options_.max_attempts) +
                           " attempts");
}

namespace {

std::vector<GsmDistractors> load_all(const GsmInfiniteOptions& options) {
  const std::string dir = gsm_data_dir(options.data_dir);
  std::vector<GsmDistractors> out;
  for (const GsmTemplate& t : gsm_templates()) out.push_back(load_gsm_distractors(dir, t.name));
  return out;
}

std::vector<std::string> vocabulary_texts(const std::vector<GsmDistractors>& distractors) {
  std::vector<std::string> texts = gsm_core_texts();
  for (const GsmDistractors& d : distractors) {
    for (const auto* groups : {&d.tops, &d.items}) {
      for (const auto& group : *groups) texts.insert(texts.end(), group.begin(), group.end());
    }
  }
  return texts;
}

}  // namespace

GsmInfiniteTask::GsmInfiniteTask(const GsmInfiniteOptions& options, uint64_t seed)
    : options_(options),
      seed_(seed),
      generator_(options, load_all(options)),
      tokenizer_(GsmTokenizer::from_texts(vocabulary_texts(generator_.distractors()))) {
  const double weights = options.weight_zoo + options.weight_teachers + options.weight_movies;
  if (!(weights > 0)) {
    throw std::invalid_argument("task.weight_zoo + weight_teachers + weight_movies = " +
                                std::to_string(weights) + ": expected > 0");
  }
  if (options.length == GsmLength::kNoise && options.length_max + 64 > options.max_len) {
    throw std::invalid_argument(
        "task.max_len = " + std::to_string(options.max_len) +
        ": expected >= task.length_max + 64 = " + std::to_string(options.length_max + 64) +
        " (room for the last noise sentence)");
  }
}

GsmGenerated GsmInfiniteTask::problem(Split split, uint64_t index) const {
  Stream stream(seed_, name(), split, index);
  const GsmSpec spec = generator_.draw_spec(split, index, stream);
  return generator_.generate(spec, stream);
}

Example GsmInfiniteTask::example(Split split, uint64_t index) const {
  return gsm_layout(problem(split, index).problem, tokenizer_, options_.max_len);
}

}  // namespace hypnos::tasks
