// Depo generator (docs/tasks.md section 2): the draws in their normative order, then a layout that
// only arranges them, so the worked example can be checked token for token.
#include "hypnos/tasks/depo.h"

#include <nlohmann/json.hpp>

#include "tasks/tagged.h"

namespace hypnos::tasks {
namespace {

std::invalid_argument depo_error(const std::string& what) {
  return std::invalid_argument("depo: " + what);
}

using detail::tagged;

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

}  // namespace

DepoTask::DepoTask(const DepoOptions& o, uint64_t seed) : options_(o), seed_(seed) {
  auto need = [](bool ok, const std::string& key, int64_t value, const std::string& expected) {
    if (!ok) {
      throw std::invalid_argument("task." + key + " = " + std::to_string(value) + ": expected " +
                                  expected);
    }
  };
  need(o.n_max >= 3, "n_max", o.n_max, ">= 3");
  need(o.k_max >= 1, "k_max", o.k_max, ">= 1");
  need(o.queries >= 1, "queries", o.queries, ">= 1");
  need(o.name_vocab >= 1, "name_vocab", o.name_vocab, ">= 1");
  // Names are 1-2 pieces and must be distinct, or the redraw loop never ends.
  need(o.n_max <= o.name_vocab + o.name_vocab * o.name_vocab, "n_max", o.n_max,
       "at most name_vocab + name_vocab^2 = " +
           std::to_string(o.name_vocab + o.name_vocab * o.name_vocab) + " distinct names");
  // Worst case: every name has 2 pieces and appears twice in the context.
  need(o.context_len >= 4 * o.n_max, "context_len", o.context_len,
       ">= 4 * n_max = " + std::to_string(4 * o.n_max) + " (two 2-piece names per edge)");
  const int64_t q = std::min(o.n_max, o.queries);
  need(o.query_len >= 6 * q, "query_len", o.query_len,
       ">= 6 * min(n_max, queries) = " + std::to_string(6 * q) + " (HOP, name, ANS, name)");
}

DepoDraw DepoTask::draw(Split split, Stream& stream) const {
  const int64_t big_n = options_.n_max, big_k = options_.k_max, v = options_.name_vocab;
  DepoDraw d;
  int64_t n = big_n;
  if (split == Split::kTrain) {
    std::vector<double> w;
    for (int64_t i = 3; i <= big_n; ++i) w.push_back(1.0 / (i + std::sqrt(double(big_n))));
    n = 3 + static_cast<int64_t>(stream.weighted(w));
  }
  for (int64_t j = 0; j < n; ++j) {
    for (;;) {
      const int64_t len = stream.randint(1, 2);
      std::vector<int64_t> name;
      for (int64_t p = 0; p + 1 < len; ++p) name.push_back(stream.randint(1, v));
      name.push_back(v + stream.randint(1, v));
      if (std::find(d.names.begin(), d.names.end(), name) == d.names.end()) {
        d.names.push_back(std::move(name));
        break;
      }
    }
  }
  d.perm = iota(n);
  stream.shuffle(d.perm);
  const int64_t q = std::min(n, options_.queries);
  const std::vector<int64_t> starts = stream.sample(iota(n), q);
  std::vector<int64_t> ks;
  if (split == Split::kTrain) {
    for (int64_t i = 0; i < q; ++i) ks.push_back(stream.randint(1, big_k));
  } else {
    std::vector<int64_t> powers;
    for (int64_t p = 1; p <= big_k; p *= 2) powers.push_back(p);
    if (powers.back() != big_k) powers.push_back(big_k);
    if (options_.test_k == DepoTestK::kBalanced) {
      for (int64_t i = 0; i < q; ++i) ks.push_back(powers[i % powers.size()]);
      stream.shuffle(ks);
    } else {
      for (int64_t i = 0; i < q; ++i) ks.push_back(powers[stream.below(powers.size())]);
    }
  }
  for (int64_t i = 0; i < q; ++i) d.queries.push_back({starts[i], ks[i]});
  return d;
}

Example DepoTask::layout(const DepoDraw& d) const {
  const int64_t n = static_cast<int64_t>(d.names.size()), v = options_.name_vocab;
  const int64_t context_len = options_.context_len, big_t = seq_len();
  if (n < 1) throw depo_error("a draw needs at least one node");
  for (int64_t j = 0; j < n; ++j) {
    const auto& name = d.names[j];
    bool ok = !name.empty() && name.back() > v && name.back() <= 2 * v;
    for (size_t p = 0; ok && p + 1 < name.size(); ++p) ok = name[p] >= 1 && name[p] <= v;
    if (!ok) {
      throw depo_error("name of node " + std::to_string(j) + " is not zero or more pieces in 1.." +
                       std::to_string(v) + " followed by one in " + std::to_string(v + 1) + ".." +
                       std::to_string(2 * v));
    }
  }
  std::vector<int64_t> sorted = d.perm;
  std::sort(sorted.begin(), sorted.end());
  if (sorted != iota(n))
    throw depo_error("perm is not a permutation of 0.." + std::to_string(n - 1));

  Example ex;
  std::vector<int64_t> context;
  nlohmann::json edges = nlohmann::json::array();
  for (int64_t u : d.perm) {
    const int64_t succ = (u + 1) % n;
    context.insert(context.end(), d.names[u].begin(), d.names[u].end());
    context.insert(context.end(), d.names[succ].begin(), d.names[succ].end());
    edges.push_back({u, succ});
  }
  if (static_cast<int64_t>(context.size()) > context_len) {
    throw depo_error("context of " + std::to_string(context.size()) +
                     " tokens exceeds task.context_len = " + std::to_string(context_len));
  }
  ex.tokens.assign(context_len - context.size(), pad_id());  // left pad
  ex.tokens.insert(ex.tokens.end(), context.begin(), context.end());
  ex.loss_mask.assign(big_t, 0);

  nlohmann::json queries = nlohmann::json::array();
  for (const DepoQuery& query : d.queries) {
    if (query.start < 0 || query.start >= n || query.k < 1 || query.k > options_.k_max) {
      throw depo_error("query (start " + std::to_string(query.start) + ", k " +
                       std::to_string(query.k) + ") needs start in 0.." + std::to_string(n - 1) +
                       " and k in 1.." + std::to_string(options_.k_max));
    }
    const int64_t answer = (query.start + query.k) % n;
    ScoreGroup group;
    group.bucket = "k=" + std::to_string(query.k);
    ex.tokens.push_back(hop_id(query.k));
    ex.tokens.insert(ex.tokens.end(), d.names[query.start].begin(), d.names[query.start].end());
    // Scored: ANS (predicts the first answer piece) and every answer piece but the last, so the
    // targets are exactly the answer's pieces.
    const auto& ans = d.names[answer];
    for (size_t p = 0; p < ans.size(); ++p) {
      group.positions.push_back(static_cast<int64_t>(ex.tokens.size()));
      ex.tokens.push_back(p == 0 ? ans_id() : ans[p - 1]);
    }
    ex.tokens.push_back(ans.back());
    ex.groups.push_back(std::move(group));
    queries.push_back({{"start", query.start}, {"k", query.k}, {"answer", answer}});
  }
  if (static_cast<int64_t>(ex.tokens.size()) > big_t) {
    throw depo_error("queries of " + std::to_string(ex.tokens.size() - context_len) +
                     " tokens exceed task.query_len = " + std::to_string(options_.query_len));
  }
  ex.tokens.resize(big_t, pad_id());  // right pad
  for (const ScoreGroup& g : ex.groups) {
    for (int64_t pos : g.positions) ex.loss_mask[pos] = 1;
  }
  ex.targets.assign(ex.tokens.begin() + 1, ex.tokens.end());
  ex.targets.push_back(pad_id());

  nlohmann::ordered_json fields;
  fields["edges"] = edges;
  fields["queries"] = queries;
  fields["n"] = n;
  fields["names"] = d.names;
  ex.fields_json = fields.dump();
  return ex;
}

Example DepoTask::example(Split split, uint64_t index) const {
  Stream stream(seed_, name(), split, index);
  return layout(draw(split, stream));
}

std::string DepoTask::token_name(int64_t id) const {
  const int64_t v = options_.name_vocab;
  if (id == pad_id()) return "PAD";
  if (id >= 1 && id <= v) return tagged("n", id);
  if (id > v && id <= 2 * v) return tagged("f", id - v);
  if (id > 2 * v && id <= 2 * v + options_.k_max) return tagged("HOP", id - 2 * v);
  if (id == ans_id()) return "ANS";
  return tagged("<", id, "?>");
}

}  // namespace hypnos::tasks
