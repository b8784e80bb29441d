// Checkpoint manifests: a complete directory verifies; a flipped byte, a truncated or a deleted
// file, or a damaged manifest is reported with exactly "checksum mismatch: <file>" or
// "missing file: <file>" (docs/reliability.md R7).
#include "hypnos/io/manifest.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hypnos/io/durable.h"
#include "hypnos/io/sha256.h"
#include "io/scratch_dir.h"

namespace hypnos::io {
namespace {

using testing::read_all;
using testing::ScratchDir;
using testing::write_all;

/// A checkpoint-like directory: two files at the top, one in a subdirectory, one stale temporary.
void fill_checkpoint(const std::filesystem::path& dir) {
  write_all(dir / "model.safetensors", std::string(1000, 'm') + "end");
  write_all(dir / "trainer.json", "{\"step\": 30}");
  std::filesystem::create_directories(dir / "rng");
  write_all(dir / "rng" / "rank0.bin", std::string("\x00\x01\x02\x03", 4));
  write_all(dir / "optimizer.safetensors.tmp-12345", "half written");
}

TEST(Manifest, CompleteDirectoryVerifiesAndTemporariesAreNotListed) {
  ScratchDir dir;
  fill_checkpoint(dir.path());
  EXPECT_EQ(write_manifest(dir.path()), 3u);
  EXPECT_EQ(find_manifest_problem(dir.path()), std::nullopt);
  EXPECT_NO_THROW(verify_manifest(dir.path()));
  const auto manifest = nlohmann::json::parse(read_all(dir / "manifest.json"));
  ASSERT_EQ(manifest["files"].size(), 3u);
  EXPECT_EQ(manifest["files"][0]["path"], "model.safetensors");
  EXPECT_EQ(manifest["files"][0]["size"], 1003);
  EXPECT_EQ(manifest["files"][1]["path"], "rng/rank0.bin");
  EXPECT_EQ(manifest["files"][2]["sha256"], sha256_hex(dir / "trainer.json"));
}

TEST(Manifest, FlippedByteIsAChecksumMismatchOfThatFile) {
  ScratchDir dir;
  fill_checkpoint(dir.path());
  write_manifest(dir.path());
  std::string bytes = read_all(dir / "model.safetensors");
  bytes[500] ^= 0x04;  // same size: only the hash can tell
  write_all(dir / "model.safetensors", bytes);
  EXPECT_EQ(find_manifest_problem(dir.path()),
            "checksum mismatch: " + (dir / "model.safetensors").string());
}

TEST(Manifest, TruncatedFileIsAChecksumMismatchOfThatFile) {
  ScratchDir dir;
  fill_checkpoint(dir.path());
  write_manifest(dir.path());
  std::filesystem::resize_file(dir / "rng" / "rank0.bin", 2);
  try {
    verify_manifest(dir.path());
    FAIL() << "expected IntegrityError";
  } catch (const IntegrityError& e) {
    EXPECT_EQ(std::string(e.what()), "checksum mismatch: " + (dir / "rng" / "rank0.bin").string());
  }
}

TEST(Manifest, DeletedFileIsAMissingFile) {
  ScratchDir dir;
  fill_checkpoint(dir.path());
  write_manifest(dir.path());
  std::filesystem::remove(dir / "trainer.json");
  EXPECT_EQ(find_manifest_problem(dir.path()), "missing file: " + (dir / "trainer.json").string());
}

TEST(Manifest, DirectoryWithoutManifestIsMissingTheManifest) {
  ScratchDir dir;
  fill_checkpoint(dir.path());
  EXPECT_EQ(find_manifest_problem(dir.path()), "missing file: " + (dir / "manifest.json").string());
}

TEST(Manifest, EveryFlippedByteOfTheManifestBlamesTheManifest) {
  ScratchDir dir;
  fill_checkpoint(dir.path());
  write_manifest(dir.path());
  const std::string good = read_all(dir / "manifest.json");
  const std::string expected = "checksum mismatch: " + (dir / "manifest.json").string();
  for (size_t position = 0; position < good.size(); ++position) {
    std::string bytes = good;
    bytes[position] ^= 0x01;
    write_all(dir / "manifest.json", bytes);
    ASSERT_EQ(find_manifest_problem(dir.path()), expected) << "byte " << position;
  }
  write_all(dir / "manifest.json", good.substr(0, good.size() / 2));
  EXPECT_EQ(find_manifest_problem(dir.path()), expected);
}

TEST(Manifest, PathsLeavingTheDirectoryAreRefusedEvenWithAValidSelfChecksum) {
  ScratchDir dir;
  std::filesystem::create_directories(dir / "ckpt");
  write_all(dir / "outside.bin", "x");
  const nlohmann::json files = nlohmann::json::array(
      {{{"path", "../outside.bin"}, {"size", 1}, {"sha256", sha256_hex("x", 1)}}});
  const std::string files_text = files.dump();
  const nlohmann::json manifest = {
      {"format", "hypnos-manifest/1"},
      {"files", files},
      {"files_sha256", sha256_hex(files_text.data(), files_text.size())}};
  write_all(dir / "ckpt" / "manifest.json", manifest.dump());
  EXPECT_EQ(find_manifest_problem(dir / "ckpt"),
            "checksum mismatch: " + (dir / "ckpt" / "manifest.json").string());
}

/// Saves a checkpoint the way the trainer does: staged, manifest last, then commit.
void save_checkpoint(const std::filesystem::path& final_path, const std::string& weights) {
  StagedDirectory staged(final_path);
  write_file_atomic(staged.path() / "model.bin", weights);
  write_manifest(staged.path());
  staged.commit();
}

TEST(Manifest, KillDuringASaveLeavesThePreviousCheckpointTheOnlyValidOne) {
  ScratchDir dir;
  const auto checkpoints = dir / "checkpoints";
  save_checkpoint(checkpoints / "step_00000010", std::string(4096, 'a'));
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    StagedDirectory staged(checkpoints / "step_00000020");
    write_file_atomic(staged.path() / "model.bin", std::string(4096, 'b'));
    write_file_atomic(staged.path() / "optimizer.bin", [&](FileWriter& out) {
      out.write(std::string(100, 'o'));
      const char byte = 'x';
      (void)!::write(ready[1], &byte, 1);
      ::pause();  // SIGKILL lands in the middle of the save
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

  EXPECT_FALSE(std::filesystem::exists(checkpoints / "step_00000020"));
  EXPECT_EQ(find_manifest_problem(checkpoints / "step_00000010"), std::nullopt);
  const auto removed = remove_stale_temporaries(checkpoints);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].filename(), "step_00000020.tmp-" + std::to_string(child));
  // The next save of the same step succeeds from a clean slate.
  save_checkpoint(checkpoints / "step_00000020", std::string(4096, 'c'));
  EXPECT_EQ(find_manifest_problem(checkpoints / "step_00000020"), std::nullopt);
}

}  // namespace
}  // namespace hypnos::io
