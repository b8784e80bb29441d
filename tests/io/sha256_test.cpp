// SHA-256 against the FIPS 180-2 appendix vectors, against itself across every way of splitting the
// input into update() calls, and against Python's hashlib on a generated file.
#include "hypnos/io/sha256.h"

#include <gtest/gtest.h>

#include <random>

#include "io/scratch_dir.h"
#include "io/sha256_blocks.h"

namespace hypnos::io {
namespace {

std::string hex_of(const std::string& s) {
  return sha256_hex(s.data(), s.size());
}

TEST(Sha256, MatchesFipsVectorAbc) {
  EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, MatchesFipsVector448BitMessage) {
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, MatchesFipsVectorOneMillionA) {
  EXPECT_EQ(hex_of(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, MatchesEmptyInput) {
  EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, IncrementalUpdatesAgreeForEverySplitAroundPaddingBoundaries) {
  // Lengths 0..130 cross the 55/56/64-byte padding cases; every split point must give one digest.
  std::mt19937 rng(7);
  for (size_t length = 0; length <= 130; ++length) {
    std::string message(length, '\0');
    for (auto& c : message) c = static_cast<char>(rng());
    const std::string whole = hex_of(message);
    for (size_t split = 0; split <= length; ++split) {
      Sha256 hash;
      hash.update(message.data(), split);
      hash.update(message.data() + split, length - split);
      ASSERT_EQ(hash.hex_digest(), whole) << "length " << length << " split " << split;
    }
  }
}

TEST(Sha256, ShaExtensionBlocksMatchThePortableBlocks) {
  const detail::Sha256Blocks accelerated = detail::sha256_blocks_accelerated();
  if (accelerated == nullptr) GTEST_SKIP() << "this CPU has no SHA extensions";
  std::mt19937 rng(21);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t count = 1 + trial % 9;
    std::vector<uint8_t> blocks(64 * count);
    for (auto& byte : blocks) byte = static_cast<uint8_t>(rng());
    uint32_t portable[8], fast[8];
    for (int i = 0; i < 8; ++i) portable[i] = fast[i] = static_cast<uint32_t>(rng());
    detail::sha256_blocks_portable(portable, blocks.data(), count);
    accelerated(fast, blocks.data(), count);
    ASSERT_TRUE(std::equal(portable, portable + 8, fast)) << "trial " << trial;
  }
}

TEST(Sha256, FileDigestMatchesBufferDigestAndPythonHashlib) {
  testing::ScratchDir dir;
  // 2 MiB + 4099 bytes: spans the 1 MiB read chunk twice and ends mid-block.
  std::string bytes((size_t{2} << 20) + 4099, '\0');
  std::mt19937_64 rng(11);
  for (auto& c : bytes) c = static_cast<char>(rng());
  const auto file = dir / "blob.bin";
  testing::write_all(file, bytes);
  const std::string ours = sha256_hex(file);
  EXPECT_EQ(ours, hex_of(bytes));

  const std::string python = testing::python_or_empty();
  if (python.empty()) GTEST_SKIP() << "no HYPNOS_PYTHON: hashlib comparison skipped";
  int status = 0;
  std::string theirs = testing::run_command(
      python +
          " -c \"import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read())"
          ".hexdigest())\" " +
          file.string(),
      &status);
  ASSERT_EQ(status, 0);
  while (!theirs.empty() && (theirs.back() == '\n' || theirs.back() == '\r')) theirs.pop_back();
  EXPECT_EQ(ours, theirs);
}

TEST(Sha256, MissingFileErrorNamesThePath) {
  testing::ScratchDir dir;
  try {
    sha256_hex(dir / "absent.bin");
    FAIL() << "expected an exception";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("absent.bin"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hypnos::io
