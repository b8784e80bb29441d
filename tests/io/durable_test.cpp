// Crash-safe writes: atomic replacement, staged directories, stale-temporary cleanup after a
// process is killed with SIGKILL mid-write, and torn-line repair of append-only JSONL files.
#include "hypnos/io/durable.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/scratch_dir.h"

namespace hypnos::io {
namespace {

using testing::read_all;
using testing::ScratchDir;
using testing::write_all;

std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Durable, WriteFileAtomicReplacesContentsAndLeavesNoTemporary) {
  ScratchDir dir;
  write_file_atomic(dir / "a.txt", "first");
  write_file_atomic(dir / "a.txt", "second, longer");
  EXPECT_EQ(read_all(dir / "a.txt"), "second, longer");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"a.txt"});
}

TEST(Durable, WriteFileAtomicKeepsOldFileWhenWriterThrows) {
  ScratchDir dir;
  write_file_atomic(dir / "a.txt", "old");
  EXPECT_THROW(write_file_atomic(dir / "a.txt",
                                 [](FileWriter& out) {
                                   out.write("half of the new");
                                   throw std::runtime_error("serialiser failed");
                                 }),
               std::runtime_error);
  EXPECT_EQ(read_all(dir / "a.txt"), "old");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"a.txt"});
}

TEST(Durable, WriteErrorNamesPathAndErrnoText) {
  ScratchDir dir;
  const auto target = dir / "no_such_dir" / "a.txt";
  try {
    write_file_atomic(target, "x");
    FAIL() << "expected an exception";
  } catch (const std::system_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(target.string()), std::string::npos) << message;
    EXPECT_NE(message.find(std::strerror(ENOENT)), std::string::npos) << message;
  }
}

TEST(Durable, StagedDirectoryIsInvisibleUntilCommit) {
  ScratchDir dir;
  const auto final_path = dir / "step_00000010";
  {
    StagedDirectory staged(final_path);
    write_all(staged.path() / "model.bin", "weights");
    std::filesystem::create_directories(staged.path() / "sub");
    write_all(staged.path() / "sub" / "extra.bin", "more");
    EXPECT_FALSE(std::filesystem::exists(final_path));
    staged.commit();
    EXPECT_TRUE(staged.committed());
  }
  EXPECT_EQ(read_all(final_path / "model.bin"), "weights");
  EXPECT_EQ(read_all(final_path / "sub" / "extra.bin"), "more");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"step_00000010"});
}

TEST(Durable, StagedDirectoryWithoutCommitIsRemoved) {
  ScratchDir dir;
  {
    StagedDirectory staged(dir / "step_00000010");
    write_all(staged.path() / "model.bin", "weights");
  }
  EXPECT_TRUE(names_in(dir.path()).empty());
}

TEST(Durable, StagedDirectoryCommitReplacesAnExistingDirectoryWhole) {
  ScratchDir dir;
  const auto final_path = dir / "step";
  {
    StagedDirectory first(final_path);
    write_all(first.path() / "old_only.bin", "old");
    write_all(first.path() / "model.bin", "old weights");
    first.commit();
  }
  {
    StagedDirectory second(final_path);
    write_all(second.path() / "model.bin", "new weights");
    second.commit();
  }
  EXPECT_EQ(names_in(final_path), std::vector<std::string>{"model.bin"});
  EXPECT_EQ(read_all(final_path / "model.bin"), "new weights");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"step"});
}

TEST(Durable, RemoveStaleTemporariesRemovesDeadProcessesLeftoversOnly) {
  ScratchDir dir;
  // 999999999 is above any Linux pid_max (at most 2^22), so no such process exists.
  std::filesystem::create_directories(dir / "step_00000020.tmp-999999999" / "inner");
  write_all(dir / "step_00000020.tmp-999999999" / "inner" / "x.bin", "partial");
  write_all(dir / "metrics.jsonl.tmp-999999999", "partial");
  const std::string own = "config.yaml.tmp-" + std::to_string(::getpid());
  write_all(dir / own, "being written right now");
  write_all(dir / "notes.tmp-abc", "not a temporary of ours");
  write_all(dir / "step_00000010", "kept");

  const auto removed = remove_stale_temporaries(dir.path());
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_EQ(names_in(dir.path()),
            (std::vector<std::string>{own, "notes.tmp-abc", "step_00000010"}));
}

TEST(Durable, ProcessKilledMidWriteLeavesOldFileAndAStaleTemporary) {
  ScratchDir dir;
  const auto target = dir / "latest.json";
  write_file_atomic(target, "{\"step\": 10}");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    write_file_atomic(target, [&](FileWriter& out) {
      out.write("{\"step\": 2");
      const char byte = 'x';
      (void)!::write(ready[1], &byte, 1);
      ::pause();  // killed here, in the middle of the write
    });
    ::_exit(0);
  }
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  ASSERT_TRUE(WIFSIGNALED(status));

  EXPECT_EQ(read_all(target), "{\"step\": 10}");
  const auto leftover = dir / ("latest.json.tmp-" + std::to_string(child));
  EXPECT_TRUE(std::filesystem::exists(leftover));
  const auto removed = remove_stale_temporaries(dir.path());
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0], leftover);
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"latest.json"});
}

TEST(Durable, LineAppenderAppendsWholeLines) {
  ScratchDir dir;
  const auto file = dir / "events.jsonl";
  {
    LineAppender out(file);
    out.append("{\"a\":1}");
    out.append("{\"a\":2}");
  }
  append_line(file, "{\"a\":3}");
  EXPECT_EQ(read_all(file), "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
}

TEST(Durable, LineAppenderOnSyncLinesAreVisibleToReadersBeforeSync) {
  ScratchDir dir;
  const auto file = dir / "metrics.jsonl";
  LineAppender out(file, LineSync::kOnSync);
  out.append("{\"step\":1}");
  EXPECT_EQ(read_all(file), "{\"step\":1}\n");  // in the page cache: survives kill -9
  out.sync();
}

TEST(Durable, LineAppenderCutsATornLastLineBeforeAppending) {
  ScratchDir dir;
  const auto file = dir / "metrics.jsonl";
  write_all(file, "{\"step\":1}\n{\"step\":2}\n{\"st");
  LineAppender out(file);
  EXPECT_EQ(out.repaired_bytes(), 4u);
  out.append("{\"step\":3}");
  EXPECT_EQ(read_all(file), "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n");
}

TEST(Durable, LineAppenderDropsAFileThatIsOneTornLineLongerThanAReadChunk) {
  ScratchDir dir;
  const auto file = dir / "metrics.jsonl";
  write_all(file, std::string(10000, 'x'));
  LineAppender out(file);
  EXPECT_EQ(out.repaired_bytes(), 10000u);
  out.append("{}");
  EXPECT_EQ(read_all(file), "{}\n");
}

TEST(Durable, LineAppenderRefusesALineWithANewline) {
  ScratchDir dir;
  LineAppender out(dir / "events.jsonl");
  EXPECT_THROW(out.append("two\nlines"), std::invalid_argument);
}

TEST(Durable, RemoveTreeRemovesNestedDirectoriesAndIgnoresMissingPaths) {
  ScratchDir dir;
  std::filesystem::create_directories(dir / "a" / "b" / "c");
  write_all(dir / "a" / "b" / "c" / "f", "x");
  write_all(dir / "a" / "g", "y");
  remove_tree(dir / "a");
  EXPECT_FALSE(std::filesystem::exists(dir / "a"));
  EXPECT_NO_THROW(remove_tree(dir / "a"));
}

}  // namespace
}  // namespace hypnos::io
