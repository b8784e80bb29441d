// Depo (docs/tasks.md section 2): the worked example token for token, the draw order replayed by
// hand, and the structural invariants of generated examples on both splits.
#include "hypnos/tasks/depo.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

namespace hypnos::tasks {
namespace {

std::vector<int64_t> iota_vector(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

std::vector<int64_t> positions_of_mask(const Example& ex) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < ex.loss_mask.size(); ++i) {
    if (ex.loss_mask[i]) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

}  // namespace

TEST(Depo, WorkedExampleLayoutMatchesTasksMd) {
  DepoTask task(DepoOptions{}, 0);
  DepoDraw d;
  d.names = {{7, 62}, {55}, {12, 80}, {91}, {3, 51}};
  d.perm = {3, 0, 4, 2, 1};
  d.queries = {{2, 3}, {1, 1}, {4, 7}, {0, 16}, {3, 5}};
  const Example ex = task.layout(d);
  ASSERT_EQ(ex.tokens.size(), 360u);
  for (int i = 0; i < 284; ++i) ASSERT_EQ(ex.tokens[i], 0) << i;
  const std::vector<int64_t> context{91, 3, 51, 7, 62, 55, 3, 51, 7, 62, 12, 80, 91, 55, 12, 80};
  EXPECT_EQ(std::vector<int64_t>(ex.tokens.begin() + 284, ex.tokens.begin() + 300), context);
  const std::vector<int64_t> queries{103, 12,  80, 117, 7, 62, 101, 55, 117, 12, 80,  107, 3,
                                     51,  117, 55, 116, 7, 62, 117, 55, 105, 91, 117, 91};
  EXPECT_EQ(std::vector<int64_t>(ex.tokens.begin() + 300, ex.tokens.begin() + 325), queries);
  for (int i = 325; i < 360; ++i) ASSERT_EQ(ex.tokens[i], 0) << i;
  EXPECT_EQ(positions_of_mask(ex), (std::vector<int64_t>{303, 304, 308, 309, 314, 319, 323}));
  for (int i = 0; i + 1 < 360; ++i) ASSERT_EQ(ex.targets[i], ex.tokens[i + 1]);
  EXPECT_EQ(ex.targets[359], 0);
  // The targets at the scored positions are exactly the answers' pieces.
  std::vector<int64_t> scored_targets;
  for (int64_t pos : positions_of_mask(ex)) scored_targets.push_back(ex.targets[pos]);
  EXPECT_EQ(scored_targets, (std::vector<int64_t>{7, 62, 12, 80, 55, 55, 91}));
  ASSERT_EQ(ex.groups.size(), 5u);
  EXPECT_EQ(ex.groups[0].bucket, "k=3");
  EXPECT_EQ(ex.groups[0].positions, (std::vector<int64_t>{303, 304}));
  EXPECT_EQ(ex.groups[3].bucket, "k=16");
  EXPECT_EQ(ex.groups[3].positions, (std::vector<int64_t>{319}));

  const auto fields = nlohmann::json::parse(ex.fields_json);
  EXPECT_EQ(fields["edges"], nlohmann::json::parse("[[3,4],[0,1],[4,0],[2,3],[1,2]]"));
  EXPECT_EQ(fields["n"], 5);
  std::vector<int64_t> answers;
  for (const auto& q : fields["queries"]) answers.push_back(q["answer"]);
  EXPECT_EQ(answers, (std::vector<int64_t>{0, 2, 1, 1, 3}));
  EXPECT_EQ(fields["queries"][2]["k"], 7);
  EXPECT_EQ(fields["names"][2], nlohmann::json::parse("[12,80]"));
}

TEST(Depo, LayoutRefusesDrawsThatDoNotFit) {
  DepoTask task(DepoOptions{}, 0);
  DepoDraw d;
  d.names = {{7, 62}, {55}, {12, 80}};
  d.perm = {0, 1, 2};
  d.queries = {{0, 17}};  // k above k_max
  EXPECT_THROW(task.layout(d), std::invalid_argument);
  d.queries = {{0, 1}};
  d.perm = {0, 0, 2};
  EXPECT_THROW(task.layout(d), std::invalid_argument);
  d.perm = {0, 1, 2};
  d.names[1] = {7};  // a final piece must be in V+1..2V
  EXPECT_THROW(task.layout(d), std::invalid_argument);
}

TEST(Depo, TrainDrawsFollowTheNormativeOrder) {
  // An independent replay of docs/tasks.md section 2's steps 1-4 on the example's stream.
  const DepoOptions o;
  DepoTask task(o, 5);
  for (uint64_t index = 0; index < 30; ++index) {
    Stream s(5, "depo", Split::kTrain, index);
    std::vector<double> w;
    for (int i = 3; i <= 75; ++i) w.push_back(1.0 / (i + std::sqrt(75.0)));
    const int64_t n = 3 + static_cast<int64_t>(s.weighted(w));
    std::vector<std::vector<int64_t>> names;
    while (static_cast<int64_t>(names.size()) < n) {
      std::vector<int64_t> name;
      const int64_t len = s.randint(1, 2);
      if (len == 2) name.push_back(s.randint(1, 50));
      name.push_back(50 + s.randint(1, 50));
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    std::vector<int64_t> perm = iota_vector(n);
    s.shuffle(perm);
    const int64_t q = std::min<int64_t>(n, 10);
    const auto starts = s.sample(iota_vector(n), q);
    std::vector<int64_t> ks;
    for (int64_t i = 0; i < q; ++i) ks.push_back(s.randint(1, 16));

    Stream stream(5, "depo", Split::kTrain, index);
    const DepoDraw d = task.draw(Split::kTrain, stream);
    ASSERT_EQ(d.names, names) << index;
    ASSERT_EQ(d.perm, perm) << index;
    ASSERT_EQ(d.queries.size(), static_cast<size_t>(q));
    for (int64_t i = 0; i < q; ++i) {
      EXPECT_EQ(d.queries[i].start, starts[i]);
      EXPECT_EQ(d.queries[i].k, ks[i]);
    }
    EXPECT_EQ(stream.counter(), s.counter());
  }
}

TEST(Depo, TrainNodeCountsFollowTheWeights) {
  // docs/tasks.md: mean 27.5, median 22, P(n < 10) = 0.24 for N = 75.
  DepoTask task(DepoOptions{}, 8);
  std::vector<int64_t> ns;
  for (uint64_t index = 0; index < 4000; ++index) {
    Stream s(8, "depo", Split::kTrain, index);
    ns.push_back(static_cast<int64_t>(task.draw(Split::kTrain, s).names.size()));
  }
  const double mean = std::accumulate(ns.begin(), ns.end(), 0.0) / ns.size();
  const double below10 = std::count_if(ns.begin(), ns.end(), [](int64_t n) { return n < 10; });
  std::sort(ns.begin(), ns.end());
  EXPECT_NEAR(mean, 27.5, 1.0);
  EXPECT_NEAR(ns[ns.size() / 2], 22, 2);
  EXPECT_NEAR(below10 / ns.size(), 0.24, 0.02);
  EXPECT_GE(ns.front(), 3);
  EXPECT_LE(ns.back(), 75);
}

TEST(Depo, GeneratedExamplesDecodeToTheirCycleAndAnswers) {
  DepoTask task(DepoOptions{}, 11);
  for (Split split : {Split::kTrain, Split::kTest}) {
    for (uint64_t index = 0; index < 40; ++index) {
      const Example ex = task.example(split, index);
      const auto fields = nlohmann::json::parse(ex.fields_json);
      const int64_t n = fields["n"];
      const auto names = fields["names"].get<std::vector<std::vector<int64_t>>>();
      ASSERT_EQ(static_cast<int64_t>(names.size()), n);
      if (split == Split::kTest) ASSERT_EQ(n, 75);
      ASSERT_EQ(std::set<std::vector<int64_t>>(names.begin(), names.end()).size(), names.size());
      // Context: left PAD, then each edge's two names, an edge u -> u + 1 mod n.
      std::vector<int64_t> context;
      std::set<int64_t> sources;
      for (const auto& e : fields["edges"]) {
        const int64_t u = e[0], v = e[1];
        ASSERT_EQ(v, (u + 1) % n);
        sources.insert(u);
        context.insert(context.end(), names[u].begin(), names[u].end());
        context.insert(context.end(), names[v].begin(), names[v].end());
      }
      ASSERT_EQ(static_cast<int64_t>(sources.size()), n);
      const int64_t pad = 300 - static_cast<int64_t>(context.size());
      ASSERT_GE(pad, 0);
      for (int64_t i = 0; i < pad; ++i) ASSERT_EQ(ex.tokens[i], 0);
      ASSERT_EQ(std::vector<int64_t>(ex.tokens.begin() + pad, ex.tokens.begin() + 300), context);
      // Queries: every scored target is a piece of the right answer; groups tile the mask.
      const auto& queries = fields["queries"];
      ASSERT_EQ(queries.size(), ex.groups.size());
      ASSERT_EQ(static_cast<int64_t>(queries.size()), std::min<int64_t>(n, 10));
      size_t scored = 0;
      std::map<int64_t, int> k_count;
      for (size_t qi = 0; qi < queries.size(); ++qi) {
        const int64_t start = queries[qi]["start"], k = queries[qi]["k"];
        const int64_t answer = queries[qi]["answer"];
        ASSERT_EQ(answer, (start + k) % n);
        ASSERT_EQ(ex.groups[qi].bucket, "k=" + std::to_string(k));
        std::vector<int64_t> got;
        for (int64_t pos : ex.groups[qi].positions) {
          ASSERT_EQ(ex.loss_mask[pos], 1);
          got.push_back(ex.targets[pos]);
        }
        ASSERT_EQ(got, names[answer]);
        ASSERT_EQ(ex.tokens[ex.groups[qi].positions[0]], 117);  // ANS
        scored += got.size();
        ++k_count[k];
      }
      ASSERT_EQ(scored,
                static_cast<size_t>(std::count(ex.loss_mask.begin(), ex.loss_mask.end(), 1)));
      if (split == Split::kTest) {
        EXPECT_EQ(k_count, (std::map<int64_t, int>{{1, 2}, {2, 2}, {4, 2}, {8, 2}, {16, 2}}));
      }
      for (size_t i = 0; i + 1 < ex.tokens.size(); ++i) ASSERT_EQ(ex.targets[i], ex.tokens[i + 1]);
    }
  }
}

TEST(Depo, IidTestHopsAreDrawnFromThePowersAndKMax) {
  DepoOptions o;
  o.k_max = 12;  // not a power of two: P = {1, 2, 4, 8, 12}
  o.test_k = DepoTestK::kIid;
  DepoTask task(o, 3);
  std::map<int64_t, int> k_count;
  for (uint64_t index = 0; index < 200; ++index) {
    Stream s(3, "depo", Split::kTest, index);
    for (const DepoQuery& q : task.draw(Split::kTest, s).queries) ++k_count[q.k];
  }
  ASSERT_EQ(k_count.size(), 5u);
  for (int64_t k : {1, 2, 4, 8, 12}) EXPECT_NEAR(k_count[k], 400, 80) << "k=" << k;
}

TEST(Depo, SmallVocabularyAndShortCyclesStillFit) {
  DepoOptions o;
  o.n_max = 6;
  o.name_vocab = 2;  // 6 distinct names exist: the redraw loop must find all of them
  o.k_max = 3;
  o.queries = 10;
  o.context_len = 24;
  o.query_len = 36;
  DepoTask task(o, 4);
  EXPECT_EQ(task.vocab_size(), 2 * 2 + 3 + 2);
  for (uint64_t index = 0; index < 50; ++index) {
    const Example ex = task.example(Split::kTest, index);
    ASSERT_EQ(ex.tokens.size(), 60u);
    ASSERT_EQ(ex.groups.size(), 6u);  // q = min(n, M)
    for (int64_t id : ex.tokens) ASSERT_LT(id, task.vocab_size());
  }
}

TEST(Depo, TokenNamesFollowTheIdRanges) {
  DepoTask task(DepoOptions{}, 0);
  EXPECT_EQ(task.token_name(0), "PAD");
  EXPECT_EQ(task.token_name(50), "n50");
  EXPECT_EQ(task.token_name(51), "f1");
  EXPECT_EQ(task.token_name(101), "HOP1");
  EXPECT_EQ(task.token_name(116), "HOP16");
  EXPECT_EQ(task.token_name(117), "ANS");
  EXPECT_EQ(task.token_name(118), "<118?>");
}

}  // namespace hypnos::tasks
