// GSM-Infinite generator (docs/tasks.md 3.1, 3.4): the shipped distractor lists obey every rule;
// for every d, op and mode the independent solver, reading only the text, finds the generator's
// answer and op; lengths fall in range with and without noise; examples are pure in (seed, split,
// index).
#include "hypnos/tasks/gsm_infinite_generator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "hypnos/tasks/gsm_infinite_templates.h"
#include "hypnos/tasks/jsonl.h"
#include "testing/gsm_infinite_solver.h"

namespace hypnos::tasks {
namespace {

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::vector<GsmDistractors> shipped_lists() {
  std::vector<GsmDistractors> out;
  for (const GsmTemplate& t : gsm_templates()) {
    out.push_back(load_gsm_distractors(gsm_data_dir(""), t.name));
  }
  return out;
}

GsmInfiniteOptions zero_noise() {
  GsmInfiniteOptions o;
  o.length = GsmLength::kZero;
  return o;
}

/// Generates `count` problems of one (d, op, mode) on distinct streams, templates in turn, and
/// checks each against the solver. Returns the generated problems.
std::vector<GsmGenerated> check_against_solver(const GsmGenerator& gen, int64_t d, int64_t op,
                                               bool reverse, int count, uint64_t salt) {
  std::vector<GsmGenerated> out;
  for (int i = 0; i < count; ++i) {
    GsmSpec spec{d, op, reverse, i % 3};
    Stream stream(salt, "gsm_infinite", Split::kTest, static_cast<uint64_t>(i));
    GsmGenerated g = gen.generate(spec, stream);
    const GsmProblem& p = g.problem;
    const std::string what = "d=" + std::to_string(d) + " op=" + std::to_string(op) +
                             (reverse ? " reverse" : " forward") + " #" + std::to_string(i) +
                             "\nQ: " + p.question + "\nP: " + p.problem;
    GsmSolution s;
    EXPECT_NO_THROW(s = solve_gsm(p.problem, p.question)) << what;
    EXPECT_EQ(s.answer, p.answer) << what;
    EXPECT_EQ(s.op, p.op) << what;
    EXPECT_EQ(p.op, op) << what;
    EXPECT_EQ(p.d, d) << what;
    // Medium op 1 is forward only (docs/tasks.md 3.4); every other spec keeps its mode.
    const bool expect_reverse = reverse && !(d == 2 && op == 1);
    EXPECT_EQ(s.reverse, expect_reverse) << what;
    EXPECT_EQ(p.mode, expect_reverse ? "reverse" : "forward") << what;
    EXPECT_EQ(p.template_name, gsm_templates()[i % 3].name);
    EXPECT_GE(p.answer, 0);
    EXPECT_LE(p.answer, 1000);
    if (expect_reverse) {
      EXPECT_GE(p.answer, 1) << what;
      EXPECT_LE(p.answer, 4) << what;
    }
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace

TEST(GsmDistractorLists, ShippedListsFollowEveryRuleOfTasks34) {
  std::set<std::string> core;
  for (const GsmTemplate& t : gsm_templates()) {
    for (const auto* groups : {&t.tops, &t.items}) {
      for (const auto& g : *groups) {
        for (const std::string& n : g) core.insert(lower(n));
      }
    }
  }
  const auto lists = shipped_lists();
  for (size_t ti = 0; ti < lists.size(); ++ti) {
    const std::string tname = gsm_templates()[ti].name;
    const size_t item_size = tname == "teachers" ? 10 : 20;
    for (int side = 0; side < 2; ++side) {
      const auto& groups = side == 0 ? lists[ti].tops : lists[ti].items;
      const std::string what = tname + (side == 0 ? " tops" : " items");
      EXPECT_GE(groups.size(), 16u) << what;
      std::set<std::string> seen;
      for (const auto& g : groups) {
        EXPECT_GE(g.size(), side == 0 ? 20u : item_size) << what;
        for (const std::string& n : g) {
          EXPECT_TRUE(seen.insert(lower(n)).second) << what << ": duplicate " << n;
          EXPECT_EQ(core.count(lower(n)), 0u) << what << ": core name " << n;
          for (unsigned char c : n) {
            EXPECT_LT(c, 0x80) << what << ": " << n;
            EXPECT_EQ(std::string_view(".,?:;()!").find(static_cast<char>(c)),
                      std::string_view::npos)
                << what << ": " << n;
          }
          std::istringstream words(lower(n));
          for (std::string w; words >> w;) {
            EXPECT_TRUE(w != "in" && w != "and" && w != "per" && w != "equals")
                << what << ": " << n;
          }
          if (side == 1) {
            EXPECT_EQ(n, lower(n)) << what << ": items are lower-case";
            // The solver reads "the average ..." and "the total ..." as averages and totals.
            EXPECT_NE(n.rfind("average", 0), 0u) << n;
            EXPECT_NE(n.rfind("total", 0), 0u) << n;
          }
        }
      }
    }
  }
}

TEST(GsmDistractorLists, MalformedListsAreRefusedWithPathAndLine) {
  const std::string path = "/tmp/hypnos_gsm_names_" + std::to_string(::getpid()) + ".txt";
  auto refused = [&](const std::string& text, const std::string& needle) {
    std::ofstream(path) << text;
    try {
      read_gsm_name_list(path);
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path + ":"), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      return;
    }
    ADD_FAILURE() << "accepted: " << text;
  };
  refused("Amber Lake\n", "before any");
  refused("# Lakes\nLake in Town\n", "'in'");
  refused("# Lakes\nLake, Town\n", "one of");
  refused("# Lakes\n# Woods\nOak Woods\n", "empty subcategory");
  refused("\n\n", "no names");
  // A long bad line is quoted by a short prefix only.
  std::ofstream(path) << "# Lakes\n" << std::string(1'000'000, 'x') << ", Lake\n";
  try {
    read_gsm_name_list(path);
    ADD_FAILURE() << "accepted a name with a comma";
  } catch (const std::runtime_error& e) {
    EXPECT_LT(std::string(e.what()).size(), 300u);
    EXPECT_NE(std::string(e.what()).find(path + ":2: name 'xxx"), std::string::npos);
  }
  // An empty file and a directory are errors naming the path, not lists without names.
  std::ofstream(path, std::ios::trunc).flush();
  for (const std::string& p : {path, ::testing::TempDir()}) {
    try {
      read_gsm_name_list(p);
      ADD_FAILURE() << "accepted " << p;
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("'" + p + "'"), std::string::npos) << msg;
      EXPECT_TRUE(msg.find("is empty") != std::string::npos ||
                  msg.find("is a directory") != std::string::npos)
          << msg;
      EXPECT_EQ(msg.find(":0:"), std::string::npos) << msg;
    }
  }
  std::ofstream(path) << "# Lakes\nAmber Lake\n\n# Woods\nOak Woods\nElm Woods\n";
  const auto groups = read_gsm_name_list(path);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1], (std::vector<std::string>{"Oak Woods", "Elm Woods"}));
  std::remove(path.c_str());
}

TEST(GsmGenerator, SolverFindsAnswerAndOpForEveryDOpAndModeWithoutNoise) {
  const GsmGenerator gen(zero_noise(), shipped_lists());
  const auto start = std::chrono::steady_clock::now();
  int64_t problems = 0, attempts = 0;
  for (int64_t d : {2, 3}) {
    for (int64_t op = 1; op <= 8; ++op) {
      for (bool reverse : {false, true}) {
        for (const GsmGenerated& g : check_against_solver(gen, d, op, reverse, 50, 7)) {
          ++problems;
          attempts += g.attempts;
          EXPECT_EQ(g.tau, 0);
          EXPECT_LT(g.length,
                    1400);  // no noise: the core alone (docs/tasks.md 3.3: at most ~900 words)
        }
      }
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ gsm ] %lld problems without noise in %.2f s (%.0f/s), %.1f attempts each\n",
              static_cast<long long>(problems), s, problems / s, double(attempts) / problems);
}

TEST(GsmGenerator, NoiseFillsToTauAndKeepsTheSolverRight) {
  const GsmGenerator gen(GsmInfiniteOptions{}, shipped_lists());
  const auto start = std::chrono::steady_clock::now();
  int64_t problems = 0;
  std::vector<int64_t> lengths;
  for (int64_t d : {2, 3}) {
    for (int64_t op = 1; op <= 8; ++op) {
      for (bool reverse : {false, true}) {
        for (const GsmGenerated& g : check_against_solver(gen, d, op, reverse, 50, 11)) {
          ++problems;
          EXPECT_GE(g.tau, 2000);
          EXPECT_LE(g.tau, 3300);
          EXPECT_GE(g.length, g.tau);
          EXPECT_LE(g.length, g.tau + 80);  // one noise sentence past tau at most
          // The length the generator counted is the layout's length.
          const int64_t pieces = 1 + GsmTokenizer::pieces(g.problem.question).size() +
                                 GsmTokenizer::pieces(g.problem.problem).size() + 3;
          EXPECT_EQ(pieces, g.length);
          lengths.push_back(g.length);
        }
      }
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(lengths.begin(), lengths.end());
  auto q = [&](double f) { return static_cast<long long>(lengths[f * (lengths.size() - 1)]); };
  std::printf(
      "[ gsm ] %lld problems with noise in %.2f s (%.0f/s, solver included); tokens "
      "min %lld, p10 %lld, median %lld, p90 %lld, max %lld\n",
      static_cast<long long>(problems), s, problems / s, q(0), q(0.1), q(0.5), q(0.9), q(1));
}

TEST(GsmGenerator, TooFewAttemptsIsAnErrorNamingTheSpec) {
  GsmInfiniteOptions o = zero_noise();
  o.max_attempts = 1;
  const GsmGenerator gen(o, shipped_lists());
  // Op 8 at d = 3 takes several attempts on average; one stream of 40 must run out.
  bool threw = false;
  for (uint64_t i = 0; i < 40 && !threw; ++i) {
    Stream stream(1, "gsm_infinite", Split::kTest, i);
    try {
      gen.generate({/*d=*/3, /*op=*/8, /*reverse=*/false, /*template_index=*/0}, stream);
    } catch (const std::runtime_error& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find("op = 8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("max_attempts"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(threw);
  Stream stream(1);
  EXPECT_THROW(gen.generate({/*d=*/4, /*op=*/1, /*reverse=*/false, /*template_index=*/0}, stream),
               std::invalid_argument);
}

TEST(GsmInfiniteTask, ExamplesArePureInSeedSplitAndIndexAndFollowTheMix) {
  TaskOptions options;
  options.name = TaskName::kGsmInfinite;
  options.gsm.length = GsmLength::kZero;
  const auto task = make_task(options, 5);
  const auto again = make_task(options, 5);
  const auto other = make_task(options, 6);
  EXPECT_EQ(task->name(), "gsm_infinite");
  EXPECT_EQ(task->seq_len(), 3392);
  int differ = 0;
  std::map<std::string, int> templates, modes;
  for (uint64_t i = 0; i < 48; ++i) {
    const Example a = task->example(Split::kTest, i);
    const Example b = again->example(Split::kTest, i);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.fields_json, b.fields_json);
    differ += a.tokens != other->example(Split::kTest, i).tokens;
    const auto fields = nlohmann::json::parse(a.fields_json);
    EXPECT_EQ(fields["op"], 1 + static_cast<int64_t>(i % 8)) << "test op = 1 + index mod 8";
    EXPECT_EQ(fields["d"], 3);
    EXPECT_EQ(a.groups.at(0).bucket, "op=" + std::to_string(1 + i % 8));
    ++templates[fields["template"].get<std::string>()];
    ++modes[fields["mode"].get<std::string>()];
    const GsmSolution s =
        solve_gsm(fields["problem"].get<std::string>(), fields["question"].get<std::string>());
    EXPECT_EQ(s.answer, fields["answer"].get<int64_t>());
    EXPECT_EQ(task->example(Split::kTrain, i).tokens, again->example(Split::kTrain, i).tokens);
    for (int64_t id : a.tokens) EXPECT_NE(id, GsmTokenizer::kUnk);
  }
  EXPECT_GE(differ, 40);
  EXPECT_EQ(templates.size(), 3u);
  EXPECT_EQ(modes.size(), 2u);
}

TEST(GsmInfiniteTask, WritesJsonlWithTheProblemFields) {
  TaskOptions options;
  options.name = TaskName::kGsmInfinite;
  const auto task = make_task(options, 3);
  std::ostringstream out;
  write_jsonl(*task, Split::kTest, 0, 2, out);
  std::istringstream lines(out.str());
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    const auto obj = nlohmann::json::parse(line);
    for (const char* key : {"tokens", "targets", "loss_mask", "question", "problem", "answer", "op",
                            "mode", "template", "d", "groups"}) {
      EXPECT_TRUE(obj.contains(key)) << key;
    }
    EXPECT_EQ(obj["tokens"].size(), 3392u);
    int64_t length = 0;
    for (const auto& t : obj["tokens"]) {
      length += t.get<int64_t>() != GsmTokenizer::kPad;
      EXPECT_NE(t.get<int64_t>(), GsmTokenizer::kUnk) << "noise words are in the vocabulary";
    }
    EXPECT_GE(length, 2000);
    EXPECT_LE(length, 3392);
  }
  EXPECT_EQ(n, 2);
}

TEST(GsmInfiniteTask, BadOptionsAndMissingListsAreRefused) {
  GsmInfiniteOptions o;
  o.data_dir = "/nonexistent/hypnos";
  try {
    GsmInfiniteTask task(o, 1);
    ADD_FAILURE() << "accepted a missing data_dir";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/hypnos/zoo_tops.txt"), std::string::npos);
  }
  o = GsmInfiniteOptions{};
  o.max_len = 3000;  // below length_max
  EXPECT_THROW(GsmInfiniteTask(o, 1), std::invalid_argument);
  o = GsmInfiniteOptions{};
  o.length_min = 3400;
  EXPECT_THROW(GsmInfiniteTask(o, 1), std::invalid_argument);
}

TEST(GsmDistractorLists, DataDirIsTheOptionElseTheEnvironmentElseTheSourceTree) {
  const char* saved = std::getenv("HYPNOS_DATA_DIR");
  const std::string restore = saved ? saved : "";
  ::setenv("HYPNOS_DATA_DIR", "/srv/hypnos-data", /*overwrite=*/1);
  EXPECT_EQ(gsm_data_dir("/my/lists"), "/my/lists");
  EXPECT_EQ(gsm_data_dir(""), "/srv/hypnos-data/gsm_infinite");
  ::unsetenv("HYPNOS_DATA_DIR");
  const std::string fallback = gsm_data_dir("");
  EXPECT_EQ(fallback.substr(fallback.size() - 18), "/data/gsm_infinite");
  EXPECT_TRUE(std::ifstream(fallback + "/zoo_tops.txt").good()) << fallback;
  if (saved) ::setenv("HYPNOS_DATA_DIR", restore.c_str(), /*overwrite=*/1);
}

}  // namespace hypnos::tasks
