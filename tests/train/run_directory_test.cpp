// Run directories: a new run never overwrites an earlier one, a resume accepts only changes of the
// resumable keys (and names the first other key that changed), and yaml_line_keys reads key paths.
#include "hypnos/train/run_directory.h"

#include <gtest/gtest.h>

#include "hypnos/config/error.h"
#include "io/scratch_dir.h"

namespace hypnos::train {
namespace {

namespace fs = std::filesystem;
using io::testing::read_all;
using io::testing::ScratchDir;

const std::string kYaml =
    "run:\n  seed: 0\nmodel:\n  d_model: 32\n  pattern: AGAG\ntrain:\n  steps: 30\n"
    "  log_every: 1\n";

bool only_steps_resumable(const std::string& key) {
  return key == "train.steps";
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

// Every file of `dir` with its bytes, to prove a refused call changed nothing.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    files[fs::relative(e.path(), dir).string()] =
        e.is_regular_file() ? read_all(e.path()) : "<dir>";
  }
  return files;
}

std::string config_error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no config::ConfigError";
  return "";
}

TEST(RunDirectory, NewRunWritesConfigCommandAndCommit) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  EXPECT_TRUE(prepare_run_directory(dir, kYaml, "hypnos train x.yaml", /*resume=*/false,
                                    &only_steps_resumable)
                  .empty());
  EXPECT_EQ(read_all(dir / "config.yaml"), kYaml);
  EXPECT_NE(read_all(dir / "command.txt").find("hypnos train x.yaml"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "git_commit.txt"));
}

TEST(RunDirectory, ExistingRunWithoutResumeIsRefusedAndLeftUntouched) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  prepare_run_directory(dir, kYaml, "first", /*resume=*/false, &only_steps_resumable);
  io::testing::write_all(dir / "metrics.jsonl", "{\"kind\":\"train\",\"step\":1}\n");
  const auto before = snapshot(dir);
  const std::string other = replace(kYaml, "seed: 0", "seed: 1");
  const auto message = config_error_message([&] {
    prepare_run_directory(dir, other, "second", /*resume=*/false, &only_steps_resumable);
  });
  EXPECT_NE(message.find("already holds a run"), std::string::npos) << message;
  EXPECT_NE(message.find(dir.string()), std::string::npos) << message;
  EXPECT_EQ(snapshot(dir), before);

  // metrics.jsonl alone (a run killed before config.yaml was replaced) also counts as a run.
  const fs::path partial = scratch / "partial";
  fs::create_directories(partial);
  io::testing::write_all(partial / "metrics.jsonl", "");
  EXPECT_THROW(prepare_run_directory(partial, kYaml, "x", /*resume=*/false, &only_steps_resumable),
               config::ConfigError);
  EXPECT_FALSE(fs::exists(partial / "config.yaml"));
}

TEST(RunDirectory, ResumeWithAChangedNonResumableKeyNamesItAndChangesNothing) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  prepare_run_directory(dir, kYaml, "first", /*resume=*/false, &only_steps_resumable);
  const auto before = snapshot(dir);
  const std::string wider = replace(kYaml, "d_model: 32", "d_model: 64");
  const auto message = config_error_message(
      [&] { prepare_run_directory(dir, wider, "second", /*resume=*/true, &only_steps_resumable); });
  EXPECT_NE(message.find("model.d_model differs"), std::string::npos) << message;
  EXPECT_NE(message.find("(32 -> 64)"), std::string::npos) << message;
  EXPECT_EQ(snapshot(dir), before);

  // log_every is not resumable for this predicate even though it sits beside train.steps.
  const std::string logs = replace(kYaml, "log_every: 1", "log_every: 5");
  EXPECT_NE(config_error_message([&] {
              prepare_run_directory(dir, logs, "third", /*resume=*/true, &only_steps_resumable);
            }).find("train.log_every differs"),
            std::string::npos);
}

TEST(RunDirectory, ResumeWithResumableChangesRecordsAndRewritesThem) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  prepare_run_directory(dir, kYaml, "first", /*resume=*/false, &only_steps_resumable);
  const std::string longer = replace(kYaml, "steps: 30", "steps: 60");
  const auto changed =
      prepare_run_directory(dir, longer, "second", /*resume=*/true, &only_steps_resumable);
  EXPECT_EQ(changed, std::vector<std::string>{"train.steps: 30 -> 60"});
  EXPECT_EQ(read_all(dir / "config.yaml"), longer);
  const std::string commands = read_all(dir / "command.txt");
  EXPECT_NE(commands.find("first"), std::string::npos);
  EXPECT_NE(commands.find("second"), std::string::npos);
}

TEST(RunDirectory, ResumeOfADirectoryWithoutAConfigIsRefused) {
  ScratchDir scratch;
  const auto message = config_error_message([&] {
    prepare_run_directory(scratch / "nothing", kYaml, "x", /*resume=*/true, &only_steps_resumable);
  });
  EXPECT_NE(message.find("config.yaml does not exist"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(scratch / "nothing"));
}

TEST(RunDirectory, YamlLineKeysGivesFullPathsAndBlanksForSections) {
  EXPECT_EQ(yaml_line_keys(kYaml),
            (std::vector<std::string>{"", "run.seed", "", "model.d_model", "model.pattern", "",
                                      "train.steps", "train.log_every"}));
}

}  // namespace
}  // namespace hypnos::train
