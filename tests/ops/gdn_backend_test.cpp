// Backend names round-trip and bad names are refused with the offending value in the message; the
// choice of backend per call, its refusals and its one log line per shape.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "hypnos/log.h"
#include "hypnos/ops/gated_delta_rule.h"
#include "ops/gdn_backend_choice.h"

namespace hypnos::ops {

TEST(GdnBackend, NamesRoundTrip) {
  for (auto b :
       {GdnBackend::kAuto, GdnBackend::kReference, GdnBackend::kChunked, GdnBackend::kCuda}) {
    EXPECT_EQ(gdn_backend_from_name(gdn_backend_name(b)), b);
  }
}

TEST(GdnBackend, UnknownNameNamesTheValue) {
  try {
    gdn_backend_from_name("fast");
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'fast'"), std::string::npos);
  }
}

}  // namespace hypnos::ops

// ---- which backend runs a call (ops/gdn_backend_choice.h): a pure function, tested without a GPU

namespace hypnos::ops {
namespace {

GdnProblem problem(int64_t K, int64_t V, c10::ScalarType dtype = c10::ScalarType::BFloat16,
                   bool on_cuda = true, int64_t batch = 2, int64_t heads = 4) {
  return {batch, heads, K, V, dtype, on_cuda};
}

std::string refusal_of(GdnBackend requested, const GdnProblem& p, bool built) {
  try {
    choose_gdn_backend(requested, p, built);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(GdnBackendChoice, AutoTakesTheKernelsWhereTheyTakeTheProblem) {
  for (int64_t d : {64, 128}) {
    for (auto dtype : {c10::ScalarType::BFloat16, c10::ScalarType::Float}) {
      const GdnBackendChoice c = choose_gdn_backend(GdnBackend::kAuto, problem(d, d, dtype), true);
      EXPECT_EQ(c.backend, GdnBackend::kCuda) << d;
      EXPECT_EQ(c.fallback_reason, "");
    }
  }
}

// Jet-Nemotron-2B's JetBlock: K = 96, V = 256 on a GPU.
TEST(GdnBackendChoice, AutoFallsBackToChunkedForKNotEqualVWithAReason) {
  const GdnBackendChoice c = choose_gdn_backend(GdnBackend::kAuto, problem(96, 256), true);
  EXPECT_EQ(c.backend, GdnBackend::kChunked);
  EXPECT_NE(c.fallback_reason.find("K = V in {64, 128}"), std::string::npos) << c.fallback_reason;
  EXPECT_NE(c.fallback_reason.find("K = 96, V = 256"), std::string::npos) << c.fallback_reason;
  // K = V outside {64, 128}, too many heads, a dtype the kernels do not take: chunked as well.
  for (const GdnProblem& p :
       {problem(32, 32), problem(64, 128),
        problem(64, 64, c10::ScalarType::BFloat16, true, 512, 256),
        problem(64, 64, c10::ScalarType::Double), problem(64, 64, c10::ScalarType::Half)}) {
    const GdnBackendChoice f = choose_gdn_backend(GdnBackend::kAuto, p, true);
    EXPECT_EQ(f.backend, GdnBackend::kChunked) << describe(p);
    EXPECT_FALSE(f.fallback_reason.empty()) << describe(p);
  }
}

TEST(GdnBackendChoice, AutoOnTheCpuOrWithoutKernelsIsChunked) {
  const GdnBackendChoice cpu = choose_gdn_backend(
      GdnBackend::kAuto, problem(64, 64, c10::ScalarType::Float, /*on_cuda=*/false), true);
  EXPECT_EQ(cpu.backend, GdnBackend::kChunked);
  EXPECT_EQ(cpu.fallback_reason, "") << "the CPU path is not a fallback worth a log line";
  const GdnBackendChoice unbuilt = choose_gdn_backend(GdnBackend::kAuto, problem(64, 64), false);
  EXPECT_EQ(unbuilt.backend, GdnBackend::kChunked);
  EXPECT_NE(unbuilt.fallback_reason.find("without its CUDA kernels"), std::string::npos);
}

TEST(GdnBackendChoice, ExplicitCudaOnAnUnsupportedShapeNamesTheShapeAndTheSupportedOnes) {
  const std::string m = refusal_of(GdnBackend::kCuda, problem(96, 256), true);
  EXPECT_NE(m.find("backend cuda"), std::string::npos) << m;
  EXPECT_NE(m.find("K = 96, V = 256"), std::string::npos) << m;
  EXPECT_NE(m.find("K = V in {64, 128}"), std::string::npos) << m;
  EXPECT_NE(refusal_of(GdnBackend::kCuda, problem(64, 64), false).find("without its CUDA kernels"),
            std::string::npos);
  EXPECT_NE(refusal_of(GdnBackend::kCuda, problem(64, 64, c10::ScalarType::Float, false), true)
                .find("not CUDA tensors"),
            std::string::npos);
  EXPECT_EQ(choose_gdn_backend(GdnBackend::kCuda, problem(128, 128), true).backend,
            GdnBackend::kCuda);
}

// Packed sequences (cu_seqlens): the kernels take none yet, so auto runs chunked (one pass over all
// sequences) with a reason on a GPU, and an explicit cuda throws saying why rather than looping one
// kernel call per sequence.
GdnProblem packed(GdnProblem p) {
  p.packed = true;
  return p;
}

TEST(GdnBackendChoice, PackedSequencesRunChunkedUnderAutoAndAreRefusedByAnExplicitCuda) {
  const GdnBackendChoice gpu = choose_gdn_backend(GdnBackend::kAuto, packed(problem(64, 64)), true);
  EXPECT_EQ(gpu.backend, GdnBackend::kChunked);
  EXPECT_NE(gpu.fallback_reason.find("packed sequences (cu_seqlens)"), std::string::npos)
      << gpu.fallback_reason;
  const GdnBackendChoice cpu = choose_gdn_backend(
      GdnBackend::kAuto, packed(problem(64, 64, c10::ScalarType::Float, false)), true);
  EXPECT_EQ(cpu.backend, GdnBackend::kChunked);
  EXPECT_EQ(cpu.fallback_reason, "");

  const std::string m = refusal_of(GdnBackend::kCuda, packed(problem(128, 128)), true);
  EXPECT_NE(m.find("backend cuda"), std::string::npos) << m;
  EXPECT_NE(m.find("do not take packed sequences (cu_seqlens)"), std::string::npos) << m;
  EXPECT_NE(m.find("B = 2, H = 4, K = 128, V = 128, BFloat16 on CUDA, packed (cu_seqlens)"),
            std::string::npos)
      << m;
  // The same shape unpacked still runs the kernels.
  EXPECT_EQ(choose_gdn_backend(GdnBackend::kCuda, problem(128, 128), true).backend,
            GdnBackend::kCuda);
  for (auto b : {GdnBackend::kReference, GdnBackend::kChunked}) {
    EXPECT_EQ(choose_gdn_backend(b, packed(problem(64, 64)), true).backend, b);
  }
}

TEST(GdnBackendChoice, ReferenceAndChunkedAreTakenAsTheyAre) {
  for (auto b : {GdnBackend::kReference, GdnBackend::kChunked}) {
    EXPECT_EQ(choose_gdn_backend(b, problem(96, 256), true).backend, b);
    EXPECT_EQ(choose_gdn_backend(b, problem(64, 64), false).backend, b);
  }
}

TEST(GdnBackendChoice, FallbackIsLoggedOncePerShape) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("hypnos_gdn_fallback_" + std::to_string(::getpid()) + ".log");
  std::filesystem::remove(file);
  log::set_file(file.string());
  // A shape no other test uses, so that this process has not logged it yet.
  const GdnProblem p = problem(96, 256, c10::ScalarType::BFloat16, true, 3, 7);
  EXPECT_TRUE(log_gdn_fallback_once(p, "reason one"));
  EXPECT_FALSE(log_gdn_fallback_once(p, "reason one"));
  EXPECT_FALSE(log_gdn_fallback_once(p, "reason one"));
  EXPECT_TRUE(log_gdn_fallback_once(problem(96, 256, c10::ScalarType::BFloat16, true, 4, 7), "x"));
  const GdnProblem other = problem(96, 256, c10::ScalarType::BFloat16, true, 5, 7);
  EXPECT_TRUE(log_gdn_fallback_once(other, "y"));
  EXPECT_TRUE(log_gdn_fallback_once(packed(other), "y")) << "packed is a problem of its own";
  EXPECT_FALSE(log_gdn_fallback_once(packed(other), "y"));
  log::set_file("");
  std::ifstream in(file);
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("B = 3, H = 7, K = 96, V = 256") != std::string::npos) {
      ++lines;
      EXPECT_NE(line.find("chunked"), std::string::npos) << line;
      EXPECT_NE(line.find("reason one"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(lines, 1);
  std::filesystem::remove(file);
}

}  // namespace hypnos::ops
