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
#ifdef HYPNOS_WITH_CUDA_KERNELS
#include "cuda/gated_delta_rule_cuda.h"
#endif

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

// An H100's opt-in shared memory per block.
constexpr int64_t kDeviceSmem = 232448;

/// A problem whose kernels are built and fit the device (the kernels' own answer for these head
/// dims is tested where they are built: CudaKernelDemand below).
GdnProblem problem(int64_t K, int64_t V, c10::ScalarType dtype = c10::ScalarType::BFloat16,
                   bool on_cuda = true, int64_t batch = 2, int64_t heads = 4) {
  GdnProblem p{batch, heads, K, V, dtype, on_cuda};
  p.kernel_smem_bytes = 100 * 1024;
  p.device_smem_bytes = kDeviceSmem;
  return p;
}

GdnProblem not_built(GdnProblem p) {
  p.kernel_smem_bytes = 0;
  return p;
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

// Head dims the kernels are not built for (the kernels answer 0), and a shape whose kernels need
// more shared memory than the device has (K = V = 256 on the tensor cores, 268 KB, on an A100's
// 163 KB, say): chunked with a reason naming the shape.
TEST(GdnBackendChoice, AutoFallsBackToChunkedWhereTheKernelsAreNotBuiltOrDoNotFit) {
  const GdnBackendChoice c =
      choose_gdn_backend(GdnBackend::kAuto, not_built(problem(32, 48)), true);
  EXPECT_EQ(c.backend, GdnBackend::kChunked);
  EXPECT_NE(c.fallback_reason.find("not built for K = 32, V = 48"), std::string::npos)
      << c.fallback_reason;
  EXPECT_NE(c.fallback_reason.find("gdn_dispatch.cuh"), std::string::npos) << c.fallback_reason;
  GdnProblem big = problem(256, 256);
  big.kernel_smem_bytes = 274000;
  big.device_smem_bytes = 166912;
  const GdnBackendChoice f = choose_gdn_backend(GdnBackend::kAuto, big, true);
  EXPECT_EQ(f.backend, GdnBackend::kChunked);
  EXPECT_NE(f.fallback_reason.find("K = 256, V = 256 need 267.6 KiB of shared memory per block, "
                                   "this device allows 163.0 KiB"),
            std::string::npos)
      << f.fallback_reason;
  big.device_smem_bytes = 274000;  // exactly enough
  EXPECT_EQ(choose_gdn_backend(GdnBackend::kAuto, big, true).backend, GdnBackend::kCuda);
  // Too many heads, a dtype the kernels do not take: chunked as well.
  for (const GdnProblem& p :
       {problem(64, 64, c10::ScalarType::BFloat16, true, 512, 256),
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
  const std::string m = refusal_of(GdnBackend::kCuda, not_built(problem(96, 80)), true);
  EXPECT_NE(m.find("backend cuda"), std::string::npos) << m;
  EXPECT_NE(m.find("B = 2, H = 4, K = 96, V = 80"), std::string::npos) << m;
  EXPECT_NE(m.find("not built for K = 96, V = 80"), std::string::npos) << m;
  EXPECT_NE(refusal_of(GdnBackend::kCuda, problem(64, 64), false).find("without its CUDA kernels"),
            std::string::npos);
  EXPECT_NE(refusal_of(GdnBackend::kCuda, problem(64, 64, c10::ScalarType::Float, false), true)
                .find("not CUDA tensors"),
            std::string::npos);
  EXPECT_EQ(choose_gdn_backend(GdnBackend::kCuda, problem(128, 128), true).backend,
            GdnBackend::kCuda);
}

// Packed sequences (cu_seqlens) run on the kernels like any batch (of N sequences); on the CPU
// auto runs chunked, without a reason to log.
GdnProblem packed(GdnProblem p) {
  p.packed = true;
  return p;
}

TEST(GdnBackendChoice, PackedSequencesRunTheKernelsOnAGpuAndChunkedOnTheCpu) {
  const GdnBackendChoice gpu =
      choose_gdn_backend(GdnBackend::kAuto, packed(problem(96, 256)), true);
  EXPECT_EQ(gpu.backend, GdnBackend::kCuda);
  EXPECT_EQ(gpu.fallback_reason, "");
  EXPECT_EQ(choose_gdn_backend(GdnBackend::kCuda, packed(problem(128, 128)), true).backend,
            GdnBackend::kCuda);
  const GdnBackendChoice cpu = choose_gdn_backend(
      GdnBackend::kAuto, packed(problem(64, 64, c10::ScalarType::Float, false)), true);
  EXPECT_EQ(cpu.backend, GdnBackend::kChunked);
  EXPECT_EQ(cpu.fallback_reason, "");
  // What the kernels refuse they refuse packed too, naming the packing.
  const std::string m = refusal_of(GdnBackend::kCuda, not_built(packed(problem(96, 80))), true);
  EXPECT_NE(m.find("not built for K = 96, V = 80"), std::string::npos) << m;
  EXPECT_NE(m.find("B = 2, H = 4, K = 96, V = 80, BFloat16 on CUDA, packed (cu_seqlens)"),
            std::string::npos)
      << m;
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

#ifdef HYPNOS_WITH_CUDA_KERNELS
// The kernels' own answer (host code, no GPU needed): every (K, V) pair of K in {64, 96, 128, 256}
// x V in {64, 128, 256} is built in both kernel families, and what it asks for fits an H100; head
// dims outside the list answer 0, which the choice turns into a fallback naming the shape.
TEST(GdnBackendChoice, CudaKernelDemandCoversEveryHeadDimPairAndFitsAnH100) {
  for (const int64_t K : {64, 96, 128, 256}) {
    for (const int64_t V : {64, 128, 256}) {
      for (const GdnKernel kernel : {GdnKernel::kTensorCore, GdnKernel::kFp32}) {
        for (const auto dtype : {c10::ScalarType::BFloat16, c10::ScalarType::Float}) {
          OpsOptions ops;
          ops.gdn_kernel = kernel;
          const GdnProblem p = problem(K, V, dtype);
          const int64_t forward = gdn_kernel_smem_bytes(p, /*needs_backward=*/false, ops);
          const int64_t both = gdn_kernel_smem_bytes(p, /*needs_backward=*/true, ops);
          SCOPED_TRACE(describe(p) + (kernel == GdnKernel::kFp32 ? ", fp32 kernels" : ""));
          EXPECT_GT(forward, 0);
          EXPECT_GE(both, forward);
          EXPECT_LE(both, kDeviceSmem);
        }
      }
    }
  }
  for (const auto& [K, V] : {std::pair<int64_t, int64_t>{32, 32}, {64, 96}, {80, 128}}) {
    EXPECT_EQ(gdn_kernel_smem_bytes(problem(K, V), true, OpsOptions{}), 0) << K << " x " << V;
  }
}
#endif

}  // namespace hypnos::ops
