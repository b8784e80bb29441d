// The `task:` section declares only the selected task's keys, flat, after `name`; make_task builds
// the named task and refuses inconsistent options naming the key.
#include "hypnos/tasks/task_options.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hypnos::tasks {
namespace {

/// Records the keys a visit declares; assigns `name` from a given value when it sees it, the way a
/// loader that assigns while visiting does.
struct KeyRecorder {
  std::vector<std::string> keys;
  std::optional<TaskName> set_name;

  template <class T>
  void field(std::string_view key, T& member, std::string_view doc, config::Range = {}) {
    keys.emplace_back(key);
    EXPECT_FALSE(doc.empty()) << key;
    if constexpr (std::is_same_v<T, TaskName>) {
      if (set_name) member = *set_name;
    }
  }
};

std::vector<std::string> keys_of(std::optional<TaskName> name) {
  TaskOptions options;
  KeyRecorder recorder{{}, name};
  options.visit(recorder);
  return recorder.keys;
}

}  // namespace

TEST(TaskOptions, Rule110KeysAreFlatAfterName) {
  EXPECT_EQ(keys_of(std::nullopt),
            (std::vector<std::string>{"name", "n_states", "width", "t", "boundary"}));
}

TEST(TaskOptions, SelectedTaskDecidesWhichKeysExist) {
  EXPECT_EQ(keys_of(TaskName::kDepo),
            (std::vector<std::string>{"name", "n_max", "k_max", "queries", "name_vocab",
                                      "context_len", "query_len", "test_k"}));
  const auto gsm = keys_of(TaskName::kGsmInfinite);
  ASSERT_FALSE(gsm.empty());
  EXPECT_EQ(gsm.front(), "name");
  for (const char* key : {"d", "length", "max_len", "vocab_extend"}) {
    EXPECT_NE(std::find(gsm.begin(), gsm.end(), key), gsm.end()) << key;
  }
  EXPECT_EQ(std::find(gsm.begin(), gsm.end(), "t"), gsm.end());
}

TEST(TaskOptions, EnumNamesAreTheYamlSpellings) {
  using config::EnumNames;
  EXPECT_EQ(EnumNames<TaskName>::names[static_cast<int>(TaskName::kGsmInfinite)], "gsm_infinite");
  EXPECT_EQ(EnumNames<TaskName>::names[static_cast<int>(TaskName::kRule110)], "rule110");
  EXPECT_EQ(EnumNames<Rule110Boundary>::names[static_cast<int>(Rule110Boundary::kZero)], "zero");
  EXPECT_EQ(EnumNames<DepoTestK>::names[static_cast<int>(DepoTestK::kIid)], "iid");
  EXPECT_EQ(EnumNames<GsmLength>::names[static_cast<int>(GsmLength::kZero)], "zero");
}

TEST(TaskOptions, MakeTaskBuildsTheNamedTaskWithDefaultSizes) {
  TaskOptions options;
  auto rule110 = make_task(options, 1);
  EXPECT_EQ(rule110->name(), "rule110");
  EXPECT_EQ(rule110->vocab_size(), 6);
  EXPECT_EQ(rule110->seq_len(), 100);
  options.name = TaskName::kDepo;
  auto depo = make_task(options, 1);
  EXPECT_EQ(depo->name(), "depo");
  EXPECT_EQ(depo->vocab_size(), 118);
  EXPECT_EQ(depo->seq_len(), 360);
}

TEST(TaskOptions, InconsistentOptionsNameTheKeyAndValue) {
  TaskOptions options;
  options.name = TaskName::kDepo;
  options.depo.context_len = 200;
  try {
    make_task(options, 1);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("task.context_len = 200"), std::string::npos) << e.what();
  }
  options.depo.context_len = 300;
  options.depo.name_vocab = 5;  // only 30 distinct 1-2 piece names for 75 nodes
  EXPECT_THROW(make_task(options, 1), std::invalid_argument);
  options = TaskOptions{};
  options.rule110.width = 2;
  EXPECT_THROW(make_task(options, 1), std::invalid_argument);
}

TEST(TaskOptions, GsmInfiniteIsMadeAndItsInconsistentKeysAreRefused) {
  TaskOptions options;
  options.name = TaskName::kGsmInfinite;
  EXPECT_EQ(make_task(options, 1)->name(), "gsm_infinite");
  options.gsm.length_min = 4000;  // above length_max
  EXPECT_THROW(make_task(options, 1), std::invalid_argument);
}

}  // namespace hypnos::tasks
