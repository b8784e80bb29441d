// Run directories: one lock holder at a time, a new run never overwrites an earlier one, a resume
// accepts only changes of the resumable keys (and names every other key that changed with both
// values), a failed start leaves nothing behind, and yaml_line_keys reads key paths.
#include "hypnos/train/run_directory.h"

#include <gtest/gtest.h>

#include <unistd.h>

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
  prepare_run_directory(dir, kYaml, "hypnos train x.yaml", /*resume=*/false);
  EXPECT_EQ(read_all(dir / "config.yaml"), kYaml);
  EXPECT_NE(read_all(dir / "command.txt").find("hypnos train x.yaml"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "git_commit.txt"));
}

TEST(RunDirectory, ExistingRunWithoutResumeIsRefusedAndLeftUntouched) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  prepare_run_directory(dir, kYaml, "first", /*resume=*/false);
  io::testing::write_all(dir / "metrics.jsonl", "{\"kind\":\"train\",\"step\":1}\n");
  const auto before = snapshot(dir);
  const std::string other = replace(kYaml, "seed: 0", "seed: 1");
  const auto message =
      config_error_message([&] { prepare_run_directory(dir, other, "second", /*resume=*/false); });
  EXPECT_NE(message.find("already holds a run"), std::string::npos) << message;
  EXPECT_NE(message.find(dir.string()), std::string::npos) << message;
  EXPECT_EQ(snapshot(dir), before);

  // metrics.jsonl alone (a run killed before config.yaml was replaced) also counts as a run.
  const fs::path partial = scratch / "partial";
  fs::create_directories(partial);
  io::testing::write_all(partial / "metrics.jsonl", "");
  EXPECT_THROW(prepare_run_directory(partial, kYaml, "x", /*resume=*/false), config::ConfigError);
  EXPECT_FALSE(fs::exists(partial / "config.yaml"));
}

TEST(RunDirectory, ResumeWithChangedNonResumableKeysNamesEachWithBothValues) {
  const std::string changed =
      replace(replace(kYaml, "d_model: 32", "d_model: 64"), "log_every: 1", "log_every: 5");
  const auto message = config_error_message([&] {
    check_resume_config("runs/x", kYaml, "the config of checkpoint step_00000010", changed,
                        &only_steps_resumable);
  });
  EXPECT_NE(message.find("cannot resume runs/x"), std::string::npos) << message;
  EXPECT_NE(message.find("the config of checkpoint step_00000010"), std::string::npos) << message;
  // log_every is not resumable for this predicate even though it sits beside train.steps.
  EXPECT_NE(message.find("model.d_model: 32 -> 64, train.log_every: 1 -> 5"), std::string::npos)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
}

TEST(RunDirectory, ResumeWithResumableChangesReturnsThemAndRewritesConfig) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  prepare_run_directory(dir, kYaml, "first", /*resume=*/false);
  const std::string longer = replace(kYaml, "steps: 30", "steps: 60");
  const auto changes =
      check_resume_config(dir, kYaml, "config.yaml", longer, &only_steps_resumable);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].str(), "train.steps: 30 -> 60");
  prepare_run_directory(dir, longer, "second", /*resume=*/true);
  EXPECT_EQ(read_all(dir / "config.yaml"), longer);
  const std::string commands = read_all(dir / "command.txt");
  EXPECT_NE(commands.find("first"), std::string::npos);
  EXPECT_NE(commands.find("second"), std::string::npos);
}

TEST(RunDirectory, ConfigsWithOtherKeysAreRefused) {
  const auto message = config_error_message([&] {
    check_resume_config("d", kYaml, "config.yaml", kYaml + "  extra: 1\n", &only_steps_resumable);
  });
  EXPECT_NE(message.find("different keys than config.yaml"), std::string::npos) << message;
}

TEST(RunDirectory, ResumeOfADirectoryWithoutAConfigIsRefused) {
  ScratchDir scratch;
  const auto message = config_error_message(
      [&] { prepare_run_directory(scratch / "nothing", kYaml, "x", /*resume=*/true); });
  EXPECT_NE(message.find("config.yaml does not exist"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(scratch / "nothing"));
}

TEST(RunDirectory, OneLockHolderAtATimeNamedByPidAndReleasedWithTheObject) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  {
    RunDirectoryLock first(dir);
    EXPECT_TRUE(first.created_directory());
    // A second open description conflicts even in the same process (flock semantics).
    const auto message = config_error_message([&] { RunDirectoryLock second(dir); });
    EXPECT_NE(message.find("run directory " + dir.string() + " is in use"), std::string::npos)
        << message;
    EXPECT_NE(message.find("pid " + std::to_string(::getpid())), std::string::npos) << message;
  }
  RunDirectoryLock again(dir);  // released with the first object
  EXPECT_FALSE(again.created_directory());
}

TEST(RunDirectory, FailedStartRemovesOnlyWhatItWrote) {
  ScratchDir scratch;
  const fs::path dir = scratch / "run";
  {
    RunDirectoryLock lock(dir);
    const auto before = run_files_present(dir);
    EXPECT_TRUE(before.empty());
    prepare_run_directory(dir, kYaml, "x", /*resume=*/false);
    io::testing::write_all(dir / "events.jsonl", "");
    remove_failed_start(dir, before, lock.created_directory());
  }
  EXPECT_FALSE(fs::exists(dir));

  // A directory that existed keeps what was there before, and a directory in a file's way.
  fs::create_directories(dir / "metrics.jsonl.d");
  fs::create_directories(dir / "events.jsonl");
  io::testing::write_all(dir / "notes.txt", "mine");
  {
    RunDirectoryLock lock(dir);
    const auto before = run_files_present(dir);
    EXPECT_EQ(before, std::vector<std::string>{"events.jsonl"});
    prepare_run_directory(dir, kYaml, "x", /*resume=*/false);
    remove_failed_start(dir, before, lock.created_directory());
  }
  EXPECT_FALSE(fs::exists(dir / "config.yaml"));
  EXPECT_FALSE(fs::exists(dir / "command.txt"));
  EXPECT_FALSE(fs::exists(dir / "git_commit.txt"));
  EXPECT_TRUE(fs::is_directory(dir / "events.jsonl"));
  EXPECT_EQ(read_all(dir / "notes.txt"), "mine");
  EXPECT_FALSE(holds_run(dir));
}

TEST(RunDirectory, YamlLineKeysGivesFullPathsAndBlanksForSections) {
  EXPECT_EQ(yaml_line_keys(kYaml),
            (std::vector<std::string>{"", "run.seed", "", "model.d_model", "model.pattern", "",
                                      "train.steps", "train.log_every"}));
}

}  // namespace
}  // namespace hypnos::train
