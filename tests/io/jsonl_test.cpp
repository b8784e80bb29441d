// JSONL records: doubles read back bit-exactly (in C++ and in Python), integers exactly, strings
// escaped to valid JSON whatever the bytes, non-finite values visible, and resume truncation.
#include "hypnos/io/jsonl.h"

#include <gtest/gtest.h>

#include <bit>
#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "io/scratch_dir.h"

namespace hypnos::io {
namespace {

using testing::read_all;
using testing::ScratchDir;
using testing::write_all;

/// Finite doubles over the whole exponent range, subnormals and signed zeros included.
std::vector<double> awkward_doubles() {
  std::vector<double> values = {0.0,
                                -0.0,
                                0.1,
                                1.0 / 3.0,
                                1e-310,
                                -5e-324,
                                1e300,
                                2.5e-7,
                                std::numeric_limits<double>::max(),
                                std::numeric_limits<double>::min(),
                                123456789012345678.0};
  std::mt19937_64 rng(3);
  while (values.size() < 2000) {
    const double value = std::bit_cast<double>(rng());
    if (std::isfinite(value)) values.push_back(value);
  }
  return values;
}

TEST(Jsonl, DoublesReadBackBitExactly) {
  for (const double value : awkward_doubles()) {
    const std::string text = json_number(value);
    double back = 0;
    const auto result = std::from_chars(text.data(), text.data() + text.size(), back);
    ASSERT_EQ(result.ec, std::errc()) << text;
    ASSERT_EQ(std::bit_cast<uint64_t>(back), std::bit_cast<uint64_t>(value)) << text;
    ASSERT_EQ(nlohmann::json::parse(text).get<double>(), value) << text;
  }
}

TEST(Jsonl, IntegralDoublesStayFloatsAndNonFiniteValuesAreStrings) {
  EXPECT_EQ(json_number(3.0), "3.0");
  EXPECT_EQ(json_number(-0.0), "-0.0");
  EXPECT_EQ(json_number(1e300), "1e+300");
  EXPECT_EQ(json_number(0.1), "0.1");
  EXPECT_EQ(json_number(std::nan("")), "\"NaN\"");
  EXPECT_EQ(json_number(std::numeric_limits<double>::infinity()), "\"Infinity\"");
  EXPECT_EQ(json_number(-std::numeric_limits<double>::infinity()), "\"-Infinity\"");
}

TEST(Jsonl, OverloadsPickTheJsonTypeOfTheArgument) {
  const std::vector<int64_t> ids = {-1, 0, 7};
  const std::vector<double> xs = {0.5, 2.0};
  const JsonRecord record = JsonRecord()
                                .add("text", "abc")
                                .add("int", 3)
                                .add("float", 2.5f)
                                .add("flag", true)
                                .add("min", std::numeric_limits<int64_t>::min())
                                .add("umax", std::numeric_limits<uint64_t>::max())
                                .add("size", size_t{12})
                                .add("ids", ids)
                                .add("xs", xs)
                                .add("nested", JsonRecord().add("k", 1))
                                .add_null("none");
  EXPECT_EQ(record.str(),
            "{\"text\":\"abc\",\"int\":3,\"float\":2.5,\"flag\":true,"
            "\"min\":-9223372036854775808,\"umax\":18446744073709551615,\"size\":12,"
            "\"ids\":[-1,0,7],\"xs\":[0.5,2.0],\"nested\":{\"k\":1},\"none\":null}");
  const auto parsed = nlohmann::json::parse(record.str());
  EXPECT_EQ(parsed["min"].get<int64_t>(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(parsed["umax"].get<uint64_t>(), std::numeric_limits<uint64_t>::max());
}

TEST(Jsonl, StringsAreEscapedAndInvalidUtf8IsReplaced) {
  std::string every_control;
  for (int c = 0; c < 0x20; ++c) every_control += static_cast<char>(c);
  const std::string tricky = "quote \" backslash \\ slash / " + every_control + " é 漢 🙂 \x7f";
  const JsonRecord record = JsonRecord().add("s", tricky).add("k\"ey\n", 1);
  const auto parsed = nlohmann::json::parse(record.str());
  EXPECT_EQ(parsed["s"], tricky);
  EXPECT_EQ(parsed["k\"ey\n"], 1);
  EXPECT_EQ(record.str().find('\n'), std::string::npos);

  // A lone continuation byte, a truncated sequence, an overlong '/', a UTF-16 surrogate.
  const std::string invalid =
      "a\x80"
      "b\xE6\xBC"
      "c\xC0\xAF"
      "d\xED\xA0\x80";
  const auto repaired = nlohmann::json::parse(json_string(invalid)).get<std::string>();
  EXPECT_EQ(repaired.substr(0, 4),
            "a\xEF\xBF\xBD"
            "");
  EXPECT_EQ(repaired.find('\x80'), std::string::npos);
  EXPECT_NE(repaired.find('d'), std::string::npos);
}

TEST(Jsonl, DuplicateKeysAreRefused) {
  JsonRecord record;
  record.add("step", 1);
  EXPECT_THROW(record.add("step", 2.0), std::invalid_argument);
}

TEST(Jsonl, PythonReadsTheSameDoubleBitsAndNonFiniteMarkers) {
  const std::string python = testing::python_or_empty();
  if (python.empty()) GTEST_SKIP() << "no HYPNOS_PYTHON";
  ScratchDir dir;
  const std::vector<double> values = awkward_doubles();
  {
    JsonlWriter out(dir / "metrics.jsonl");
    for (size_t i = 0; i < 300; ++i) {
      out.write(JsonRecord().add("step", i).add("loss", values[i]));
    }
    out.write(JsonRecord().add("step", 300).add("loss", std::nan("")));
    out.write(JsonRecord().add("step", 301).add("loss", -std::numeric_limits<double>::infinity()));
  }
  write_all(dir / "read.py",
            "import json, struct, sys\n"
            "for line in open(sys.argv[1]):\n"
            "    r = json.loads(line)\n"
            "    v = r['loss'] if not isinstance(r['loss'], str) else float(r['loss'])\n"
            "    assert isinstance(v, float)\n"
            "    print(r['step'], struct.pack('<d', v).hex())\n");
  int status = 0;
  const std::string output = testing::run_command(
      python + " " + (dir / "read.py").string() + " " + (dir / "metrics.jsonl").string(), &status);
  ASSERT_EQ(status, 0) << output;
  std::istringstream lines(output);
  for (size_t i = 0; i < 300; ++i) {
    size_t step;
    std::string hex;
    ASSERT_TRUE(lines >> step >> hex);
    ASSERT_EQ(step, i);
    const uint64_t bits = std::bit_cast<uint64_t>(values[i]);
    char expected[17];
    for (int b = 0; b < 8; ++b)
      std::snprintf(expected + 2 * b, 3, "%02x", int((bits >> (8 * b)) & 255));
    ASSERT_EQ(hex, expected) << "value " << values[i];
  }
  size_t step;
  std::string hex;
  ASSERT_TRUE(lines >> step >> hex);
  EXPECT_EQ(hex.substr(12), "f87f");  // a NaN: exponent all ones, quiet bit set
  ASSERT_TRUE(lines >> step >> hex);
  EXPECT_EQ(hex, "000000000000f0ff");  // -inf
}

TEST(Jsonl, WriterAppendsAcrossReopens) {
  ScratchDir dir;
  {
    JsonlWriter out(dir / "events.jsonl");
    out.write(JsonRecord().add("event", "start"));
  }
  JsonlWriter out(dir / "events.jsonl");
  out.write(JsonRecord().add("event", "resume").add("step", 30));
  EXPECT_EQ(read_all(dir / "events.jsonl"),
            "{\"event\":\"start\"}\n{\"event\":\"resume\",\"step\":30}\n");
}

TEST(Jsonl, DropRecordsAfterKeepsEarlierStepsStepLessLinesAndDropsATornTail) {
  ScratchDir dir;
  const auto file = dir / "metrics.jsonl";
  write_all(file,
            "{\"step\":1,\"loss\":2.0}\n{\"event\":\"eval\"}\n{\"step\":2}\n{\"step\":3}\n"
            "{\"step\":4}\nnot json\n{\"step\":5}\n{\"step\":6,\"lo");
  EXPECT_EQ(drop_jsonl_records_after(file, "step", 3), 3u);  // steps 4, 5 and the torn 6
  EXPECT_EQ(read_all(file),
            "{\"step\":1,\"loss\":2.0}\n{\"event\":\"eval\"}\n{\"step\":2}\n{\"step\":3}\n"
            "not json\n");
  EXPECT_EQ(drop_jsonl_records_after(file, "step", 3), 0u);
  EXPECT_EQ(drop_jsonl_records_after(dir / "absent.jsonl", "step", 3), 0u);
}

}  // namespace
}  // namespace hypnos::io
