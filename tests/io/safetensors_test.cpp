// safetensors: bit-exact round trips for every dtype on awkward shapes, the byte layout of the
// format, interoperability with a 20-line pure-Python reader, a clear error for each kind of
// malformed header (docs/reliability.md R13), and a byte-flip/truncation sweep that must never
// crash.
#include "hypnos/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "io/scratch_dir.h"

namespace hypnos::io {
namespace {

using testing::read_all;
using testing::ScratchDir;
using testing::write_all;

/// Every bit pattern matters (NaN payloads, -0, subnormals): compare through an integer view.
bool bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.nbytes() == cb.nbytes() &&
         (ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0);
}

/// Random bit patterns of `dtype` (floats include NaNs, infinities and subnormals).
at::Tensor random_bits(at::ScalarType dtype, at::IntArrayRef shape, at::Generator& gen) {
  const auto options = at::TensorOptions().dtype(at::kByte);
  const int64_t numel = c10::multiply_integers(shape);
  const int64_t element = static_cast<int64_t>(c10::elementSize(dtype));
  at::Tensor bytes = at::randint(0, 256, {numel * element}, gen, options);
  return bytes.view(dtype).view(shape).clone();
}

NamedTensors every_dtype_on_awkward_shapes() {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  NamedTensors tensors;
  tensors.emplace_back("f32", random_bits(at::kFloat, {3, 5, 7}, gen));
  tensors.emplace_back("bf16", random_bits(at::kBFloat16, {63}, gen));
  tensors.emplace_back("f16", random_bits(at::kHalf, {5, 1, 3}, gen));
  tensors.emplace_back("f64", random_bits(at::kDouble, {2, 9}, gen));
  tensors.emplace_back("i64", at::tensor({INT64_MIN, int64_t{-1}, int64_t{0}, INT64_MAX}));
  tensors.emplace_back("i32", random_bits(at::kInt, {75}, gen));
  tensors.emplace_back("u8", random_bits(at::kByte, {13}, gen));
  tensors.emplace_back("bool", at::randint(0, 2, {4, 3}, gen).to(at::kBool));
  tensors.emplace_back("scalar", at::scalar_tensor(3.25, at::kFloat));
  tensors.emplace_back("empty", at::empty({0, 4}, at::kHalf));
  return tensors;
}

TEST(Safetensors, RoundTripIsBitExactForEveryDtypeAndAwkwardShapes) {
  ScratchDir dir;
  const NamedTensors tensors = every_dtype_on_awkward_shapes();
  const TensorMetadata metadata = {{"format", "pt"}, {"step", "30"}, {"note", "ünïcode \"q\""}};
  save_safetensors(dir / "all.safetensors", tensors, metadata);
  const SafetensorsContents loaded = load_safetensors(dir / "all.safetensors");
  EXPECT_EQ(loaded.metadata, metadata);
  ASSERT_EQ(loaded.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(loaded.tensors[i].first, tensors[i].first) << "file order is the writer's order";
    EXPECT_TRUE(bitwise_equal(loaded.tensors[i].second, tensors[i].second)) << tensors[i].first;
  }
  // The in-memory writer and parser agree with the file ones.
  const std::string bytes = safetensors_bytes(tensors, metadata);
  EXPECT_EQ(bytes, read_all(dir / "all.safetensors"));
  const SafetensorsContents parsed = parse_safetensors(bytes);
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(parsed.tensors[i].second, tensors[i].second)) << tensors[i].first;
  }
}

TEST(Safetensors, StridedAndMapInputsAreStoredContiguouslyInNameOrder) {
  ScratchDir dir;
  const at::Tensor base = at::arange(24, at::kFloat).view({4, 6});
  std::map<std::string, at::Tensor> tensors = {{"z_transposed", base.t()},
                                               {"a_slice", base.slice(1, 1, 5, 2)}};
  save_safetensors(dir / "m.safetensors", tensors);
  const SafetensorsContents loaded = load_safetensors(dir / "m.safetensors");
  ASSERT_EQ(loaded.tensors.size(), 2u);
  EXPECT_EQ(loaded.tensors[0].first, "a_slice");
  EXPECT_TRUE(at::equal(loaded.at("z_transposed"), base.t()));
  EXPECT_TRUE(at::equal(loaded.at("a_slice"), base.slice(1, 1, 5, 2)));
  EXPECT_TRUE(loaded.metadata.empty());
  EXPECT_THROW(loaded.at("absent"), std::out_of_range);
}

TEST(Safetensors, LazilyNegatedViewsAreWrittenWithTheirVisibleValues) {
  const at::Tensor x = at::arange(6, at::kFloat);
  const at::Tensor negated = at::_neg_view(x);
  ASSERT_TRUE(negated.is_neg());
  const SafetensorsContents back = parse_safetensors(safetensors_bytes({{"n", negated}}));
  EXPECT_TRUE(at::equal(back.at("n"), -x));
}

TEST(Safetensors, LayoutIsLittleEndianLengthThenSpacePaddedJsonThenData) {
  const NamedTensors tensors = {{"x", at::tensor({1.0f, 2.0f, 3.0f})}};
  const std::string bytes = safetensors_bytes(tensors, {{"k", "v"}});
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(bytes[i]);
  ASSERT_EQ(bytes.size(), 8 + length + 12);
  EXPECT_EQ((8 + length) % 8, 0u);
  const std::string header = bytes.substr(8, length);
  EXPECT_EQ(header.front(), '{');
  const auto json = nlohmann::json::parse(header);
  EXPECT_EQ(json["x"]["dtype"], "F32");
  EXPECT_EQ(json["x"]["shape"], nlohmann::json::array({3}));
  EXPECT_EQ(json["x"]["data_offsets"], nlohmann::json::array({0, 12}));
  EXPECT_EQ(json["__metadata__"]["k"], "v");
  const float expected[3] = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + length, expected, 12), 0);
}

TEST(Safetensors, WriterRefusesBadNamesAndDtypesNamingTheTensor) {
  ScratchDir dir;
  auto message_of = [&](const NamedTensors& tensors) {
    try {
      save_safetensors(dir / "bad.safetensors", tensors);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  const at::Tensor x = at::zeros({2});
  EXPECT_NE(message_of({{"w", x}, {"w", x}}).find("'w': duplicate name"), std::string::npos);
  EXPECT_NE(message_of({{"__metadata__", x}}).find("'__metadata__'"), std::string::npos);
  EXPECT_NE(message_of({{"c", at::zeros({2}, at::kComplexFloat)}}).find("'c': dtype"),
            std::string::npos);
  EXPECT_NE(message_of({{"u", at::Tensor()}}).find("'u': undefined"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.safetensors"));
}

TEST(Safetensors, PythonReadsHypnosFilesWithAPureStructJsonParser) {
  const std::string python = testing::python_or_empty();
  if (python.empty()) GTEST_SKIP() << "no HYPNOS_PYTHON";
  ScratchDir dir;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(99);
  const NamedTensors tensors = {
      {"w_f32", at::randn({3, 7}, gen)},
      {"w_bf16", at::randn({11}, gen).to(at::kBFloat16)},
      {"w_f16", at::randn({2, 2, 3}, gen).to(at::kHalf)},
      {"w_f64", at::randn({5}, gen, at::kDouble)},
      {"ids", at::tensor({INT64_MIN + 1, int64_t{-7}, int64_t{0}, INT64_MAX})},
      {"i32", at::randint(-1000, 1000, {6}, gen, at::kInt)},
      {"mask", at::tensor({1, 0, 1}, at::kByte).to(at::kBool)},
      {"u8", at::tensor({0, 200, 255}, at::kByte)}};
  save_safetensors(dir / "x.safetensors", tensors, {{"origin", "hypnos"}});
  write_all(dir / "read.py", R"PY(
import json, struct, sys, torch
data = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', data[:8])
header = json.loads(data[8:8 + n])
body = data[8 + n:]
dtypes = {'F32': torch.float32, 'F64': torch.float64, 'BF16': torch.bfloat16, 'F16': torch.float16,
          'I64': torch.int64, 'I32': torch.int32, 'U8': torch.uint8, 'BOOL': torch.bool}
out = {'__metadata__': header.pop('__metadata__', {})}
for name, e in header.items():
    b, end = e['data_offsets']
    t = torch.frombuffer(bytearray(body[b:end]), dtype=dtypes[e['dtype']]).reshape(e['shape'])
    flat = t.reshape(-1)
    values = flat.tolist() if not flat.is_floating_point() else flat.double().tolist()
    out[name] = {'dtype': e['dtype'], 'shape': e['shape'], 'values': values}
print(json.dumps(out))
)PY");
  int status = 0;
  const std::string output = testing::run_command(
      python + " " + (dir / "read.py").string() + " " + (dir / "x.safetensors").string(), &status);
  ASSERT_EQ(status, 0) << output;
  const auto seen = nlohmann::json::parse(output);
  EXPECT_EQ(seen["__metadata__"]["origin"], "hypnos");
  for (const auto& [name, tensor] : tensors) {
    SCOPED_TRACE(name);
    const auto& entry = seen.at(name);
    EXPECT_EQ(entry["dtype"], safetensors_dtype_name(tensor.scalar_type()));
    EXPECT_EQ(entry["shape"].get<std::vector<int64_t>>(), tensor.sizes().vec());
    const at::Tensor flat = tensor.reshape(-1);
    ASSERT_EQ(entry["values"].size(), static_cast<size_t>(flat.numel()));
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const auto& value = entry["values"][i];
      if (flat.is_floating_point()) {
        // Every float dtype widens to double exactly, so equality is the right test.
        EXPECT_EQ(value.get<double>(), flat[i].item<double>()) << "element " << i;
      } else if (flat.scalar_type() == at::kBool) {
        EXPECT_EQ(value.get<bool>(), flat[i].item<bool>()) << "element " << i;
      } else {
        EXPECT_EQ(value.get<int64_t>(), flat[i].item<int64_t>()) << "element " << i;
      }
    }
  }
}

// ---- malformed files ---------------------------------------------------------------------------

std::string file_with_header(const std::string& header, size_t data_bytes, char fill = 0) {
  std::string out(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(out.data(), &length, 8);
  return out + header + std::string(data_bytes, fill);
}

std::string load_error(const std::filesystem::path& file) {
  try {
    load_safetensors(file);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no exception";
}

struct MalformedCase {
  const char* what;
  std::string bytes;
  const char* expected;  // a substring of the message (besides the file name)
};

TEST(Safetensors, EachKindOfMalformedFileGivesAnErrorNamingFileAndTensor) {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::string huge_length(8, '\0');
  const uint64_t huge = uint64_t{1} << 62;
  std::memcpy(huge_length.data(), &huge, 8);
  std::string past_end = file_with_header("{}", 0);
  past_end[0] = 100;
  const std::vector<MalformedCase> cases = {
      {"shorter than 8 bytes", "\x02\x00\x00", "fewer than the 8-byte header length"},
      {"absurd header length", huge_length + "{}", "exceeds the limit"},
      {"header length past the end", past_end, "runs past the end"},
      {"header not JSON", file_with_header("{\"w\": nope}", 0), "not JSON"},
      {"header not an object", file_with_header("[1, 2]  ", 0), "does not start with '{'"},
      {"truncated JSON", file_with_header("{\"w\":{\"dtype\"", 0), "not JSON"},
      {"entry not an object", file_with_header(R"({"w":[1]})", 0), "'w': the entry is not"},
      {"missing dtype", file_with_header(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8),
       "'w': missing 'dtype'"},
      {"missing shape", file_with_header(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8),
       "'w': missing 'shape'"},
      {"missing offsets", file_with_header(R"({"w":{"dtype":"F32","shape":[2]}})", 8),
       "'w': missing 'data_offsets'"},
      {"unexpected key",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8),
       "'w': unexpected key 'x'"},
      {"unknown dtype",
       file_with_header(R"({"w":{"dtype":"F13","shape":[2],"data_offsets":[0,8]}})", 8),
       "'w': unknown dtype 'F13'"},
      {"unsupported dtype",
       file_with_header(R"({"w":{"dtype":"I8","shape":[8],"data_offsets":[0,8]}})", 8),
       "'w': unsupported dtype 'I8'"},
      {"dtype not a string",
       file_with_header(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8),
       "'w': dtype is not a string"},
      {"negative dimension",
       file_with_header(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
       "'w': every shape entry must be a non-negative integer"},
      {"fractional dimension",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
       "'w': every shape entry"},
      {"element count overflows",
       file_with_header(
           R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8),
       "'w': shape [4611686018427387904,4] has too many elements"},
      {"zero-sized but with overflowing strides",
       file_with_header(R"({"w":{"dtype":"F32","shape":[0,4611686018427387904,4],)"
                        R"("data_offsets":[0,0]}})",
                        0),
       "'w': shape [0,4611686018427387904,4] has too many elements"},
      {"nested too deeply",
       file_with_header(R"({"w":{"dtype":"F32","shape":[[[2]]],"data_offsets":[0,8]}})", 8),
       "nests deeper"},
      {"duplicate metadata key", file_with_header(R"({"__metadata__":{"a":"1","a":"2"}})", 0),
       "__metadata__: duplicate key 'a'"},
      {"byte count overflows",
       file_with_header(R"({"w":{"dtype":"F64","shape":[4611686018427387904],)"
                        R"("data_offsets":[0,8]}})",
                        8),
       "'w': shape [4611686018427387904] is too large in bytes"},
      {"shape and offsets disagree",
       file_with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       "'w': data_offsets [0,8] hold 8 bytes but F32 [3] needs 12"},
      {"offsets out of range",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8),
       "'w': data_offsets [8,16] out of range for a data section of 8 bytes"},
      {"offsets reversed",
       file_with_header(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
       "'w': data_offsets [8,0] out of range"},
      {"one offset only",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8),
       "'w': data_offsets must be [begin, end]"},
      {"overlapping tensors",
       file_with_header(
           "{" + ok_entry + R"(,"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "tensor 'v' overlaps tensor 'w'"},
      {"gap between tensors",
       file_with_header(
           "{" + ok_entry + R"(,"v":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16),
       "tensor 'v' starts at byte 12, leaving a gap after byte 8"},
      {"bytes after the last tensor", file_with_header("{" + ok_entry + "}", 12),
       "cover 8 bytes of a data section of 12 bytes"},
      {"duplicate tensor names", file_with_header("{" + ok_entry + "," + ok_entry + "}", 8),
       "duplicate tensor name 'w'"},
      {"duplicate key in an entry",
       file_with_header(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})",
                        8),
       "'w': duplicate key 'dtype'"},
      {"metadata not strings", file_with_header(R"({"__metadata__":{"step":30}})", 0),
       "__metadata__ value of 'step' is not a string"},
      {"metadata not an object", file_with_header(R"({"__metadata__":[]})", 0),
       "__metadata__ is not an object"},
      {"bool byte not 0 or 1",
       file_with_header(R"({"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", 3, 7),
       "'b': BOOL element 0 has byte value 7"},
  };
  ScratchDir dir;
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.what);
    const auto file = dir / "bad.safetensors";
    write_all(file, c.bytes);
    const std::string message = load_error(file);
    EXPECT_NE(message.find(file.string()), std::string::npos) << message;
    EXPECT_NE(message.find(c.expected), std::string::npos) << message;
    // The in-memory parser gives the same message for the same bytes.
    try {
      parse_safetensors(c.bytes, file.string());
      ADD_FAILURE() << "parse_safetensors accepted it";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), message);
    }
  }
}

TEST(Safetensors, HeaderOnlyReadListsEntriesWithoutTheData) {
  ScratchDir dir;
  save_safetensors(dir / "h.safetensors",
                   NamedTensors{{"b", at::zeros({2, 3}, at::kHalf)}, {"a", at::zeros({5})}},
                   {{"step", "7"}});
  TensorMetadata metadata;
  const auto entries = read_safetensors_header(dir / "h.safetensors", &metadata);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "b");
  EXPECT_EQ(entries[0].dtype, at::kHalf);
  EXPECT_EQ(entries[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(entries[1].begin, 12u);
  EXPECT_EQ(entries[1].end, 32u);
  EXPECT_EQ(metadata.at("step"), "7");
}

TEST(Safetensors, EveryFlippedOrTruncatedByteLoadsOrThrowsNeverCrashes) {
  ScratchDir dir;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const NamedTensors tensors = {{"w", at::randn({2, 3}, gen)},
                                {"e", at::randn({5}, gen).to(at::kBFloat16)},
                                {"m", at::tensor({1, 0, 1, 1}, at::kByte).to(at::kBool)}};
  const std::string good = safetensors_bytes(tensors, {{"step", "12"}});
  const auto file = dir / "fuzz.safetensors";
  int loaded = 0, refused = 0, truncated_loaded = 0;
  auto in_memory_loads = [&](const std::string& bytes) {
    try {
      parse_safetensors(bytes);
      return true;
    } catch (const std::runtime_error&) {
      return false;
    }
  };
  auto attempt = [&](const std::string& bytes) {
    write_all(file, bytes);
    bool ok;
    try {
      const SafetensorsContents contents = load_safetensors(file);
      for (const auto& [name, tensor] : contents.tensors) (void)tensor.sum().item<double>();
      ++loaded;
      ok = true;
    } catch (const std::runtime_error&) {  // system_error is a runtime_error too
      ++refused;
      ok = false;
    }
    EXPECT_EQ(in_memory_loads(bytes), ok) << "file and memory readers disagree";
    return ok;
  };
  for (size_t position = 0; position < good.size(); ++position) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string bytes = good;
      bytes[position] = static_cast<char>(bytes[position] ^ mask);
      attempt(bytes);
    }
    if (attempt(good.substr(0, position))) ++truncated_loaded;
  }
  std::printf("[ fuzz     ] %zu-byte file: %d mutations loaded, %d refused with an error\n",
              good.size(), loaded, refused);
  EXPECT_EQ(truncated_loaded, 0) << "a truncated file must never load";
  EXPECT_GT(refused, 0);
  EXPECT_GT(loaded, 0);
}

// What a file whose header parsed claims, checked against what the reader returned: the same
// tensors in the same order, each with the dtype, shape and data bytes its header entry names.
void expect_loaded_as_claimed(const std::string& bytes, const SafetensorsContents& contents,
                              int trial) {
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, length));
  const std::string_view data = std::string_view(bytes).substr(8 + length);
  const std::map<std::string, at::ScalarType> dtypes = {
      {"F32", at::kFloat}, {"F64", at::kDouble}, {"BF16", at::kBFloat16}, {"F16", at::kHalf},
      {"I64", at::kLong},  {"I32", at::kInt},    {"U8", at::kByte},       {"BOOL", at::kBool}};
  size_t claimed = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    ++claimed;
    const at::Tensor* loaded = nullptr;
    for (const auto& [n, t] : contents.tensors) {
      if (n == name) loaded = &t;
    }
    ASSERT_NE(loaded, nullptr) << "trial " << trial << ": '" << name << "' claimed, not loaded";
    ASSERT_EQ(loaded->scalar_type(), dtypes.at(entry.at("dtype").get<std::string>()))
        << "trial " << trial << ": " << name;
    ASSERT_EQ(loaded->sizes().vec(), entry.at("shape").get<std::vector<int64_t>>())
        << "trial " << trial << ": " << name;
    const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
    ASSERT_EQ(offsets.size(), 2u);
    const std::string_view claimed_bytes = data.substr(offsets[0], offsets[1] - offsets[0]);
    const at::Tensor c = loaded->contiguous();
    ASSERT_EQ(static_cast<uint64_t>(c.nbytes()), claimed_bytes.size())
        << "trial " << trial << ": " << name;
    EXPECT_TRUE(c.nbytes() == 0 ||
                std::memcmp(c.data_ptr(), claimed_bytes.data(), claimed_bytes.size()) == 0)
        << "trial " << trial << ": " << name << " holds other bytes than its header claims";
  }
  EXPECT_EQ(contents.tensors.size(), claimed) << "trial " << trial;
}

// Every random corruption of the header either loads consistently (the tensors are what the
// header claims, and a second read gives the same) or is refused with the reader's error, which
// names the source; anything else (another exception type, a crash) fails.
TEST(Safetensors, RandomMultiByteHeaderCorruptionsLoadAsClaimedOrThrowNamingTheSource) {
  // Distinct values, so that bytes read from the wrong place cannot pass for the right ones.
  const std::string good = safetensors_bytes(
      {{"w", at::arange(1, 7, at::kFloat).reshape({2, 3})}, {"b", at::arange(10, 14, at::kLong)}},
      {{"k", "v"}});
  uint64_t header_length = 0;
  std::memcpy(&header_length, good.data(), 8);
  // Bytes that steer a JSON parser into its interesting states.
  const std::string alphabet = "{}[]\",:0123456789-.eE \\uF";
  std::mt19937 rng(17);
  int loaded = 0, refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bytes = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t position = 8 + rng() % header_length;
      bytes[position] = rng() % 2 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    }
    try {
      const SafetensorsContents contents = parse_safetensors(bytes, "fuzz.safetensors");
      expect_loaded_as_claimed(bytes, contents, trial);
      const SafetensorsContents again = parse_safetensors(bytes, "fuzz.safetensors");
      ASSERT_EQ(again.tensors.size(), contents.tensors.size()) << "trial " << trial;
      for (size_t i = 0; i < again.tensors.size(); ++i) {
        EXPECT_EQ(again.tensors[i].first, contents.tensors[i].first) << "trial " << trial;
        EXPECT_TRUE(bitwise_equal(again.tensors[i].second, contents.tensors[i].second))
            << "trial " << trial << ": a second read differs";
      }
      EXPECT_EQ(again.metadata, contents.metadata) << "trial " << trial;
      ++loaded;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("fuzz.safetensors"), std::string::npos)
          << "trial " << trial << ": the error does not name the source: " << e.what();
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "trial " << trial << ": not the reader's error: " << e.what();
    }
  }
  std::printf("[ fuzz     ] 3000 random header corruptions: %d loaded as claimed, %d refused\n",
              loaded, refused);
  EXPECT_EQ(loaded + refused, 3000);
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace hypnos::io
