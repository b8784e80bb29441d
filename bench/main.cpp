// `hypnos_bench kernels|layers|train|pretrained|ops`: the throughput benchmarks, printed as tables
// for bench/RESULTS.md. A program of its own beside `hypnos` in the build tree, not installed: it
// times the library's internals. main turns exceptions into exit codes: 2 for usage errors (a bad
// flag value or override included), 1 for everything else.
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>

#include "bench/kernels_bench.h"
#include "bench/layers_bench.h"
#include "bench/ops_bench.h"
#include "bench/pretrained_bench.h"
#include "bench/train_bench.h"
#include "experiments/cli/command_line.h"
#include "hypnos/config/error.h"

namespace {

using hypnos::cli::UsageError;

const hypnos::cli::CommandSpec& bench_spec() {
  static const hypnos::cli::CommandSpec spec{
      "",
      "benchmarks: `kernels` (gated delta rule backends), `layers` (fused layer kernels vs ATen)\n"
      "`train` (training tokens/s vs N), `pretrained` (real-size checkpoint load time and "
      "memory)\n"
      "or `ops` (the gated delta rule's CPU backends)",
      {"WHAT"},
      {{"--repeats", "R", "train: timed steps per N (median reported; default 10)"},
       {"--reps", "R",
        "kernels, layers, ops: timed runs per case (median reported; default 20, 50, 5)"},
       {"--no-baseline", "", "kernels: skip the ATen chunked baseline"},
       {"--fp32-too", "",
        "kernels: also time the CUDA-core (fp32) kernels beside the tensor-core ones"},
       {"--quick", "", "small shapes only (a smoke run)"},
       {"--packed", "",
        "ops: also packed variable-length sequences (cu_seqlens) against padded and per-sequence "
        "calls"},
       {"--shape", "B,T,H,K[,V]",
        "kernels: this one shape instead of the standard list (V = K when left out)"},
       {"--passes", "LIST", "train: sleep passes to measure, e.g. 1,2,4 (default 1,2,4)"},
       {"--batch", "B", "train: batch size (default 512)"},
       {"--device", "DEV", "train: cpu | cuda (default: cuda when available)"},
       {"--modes", "LIST",
        "train: graph (CUDA graph replay) and/or eager (default: graph,eager on CUDA)"},
       {"--no-update", "", "train: forward + backward only (no clipping, no optimizer step)"},
       {"--profile", "",
        "train: also profile one step per N (Kineto) and print where the time goes;\n"
        "kernels: also profile one forward and one forward+backward per shape (time per kernel)"},
       {"--family", "NAME",
        "pretrained: jet_nemotron_2b | ouro_1p4b | ouro_1p4b_jet | all (default all)"},
       {"--dir", "DIR", "pretrained: scratch folder for the checkpoints (removed afterwards)"},
       {"--shards", "N", "pretrained: safetensors files per checkpoint (default 2)"},
       {"--fp32-first", "", "pretrained: also the baseline that builds in fp32 before loading"},
       {"--child", "", "internal: measure one N (one phase) in this process"},
       {"--phase", "NAME", "internal: the phase of `pretrained` a child runs"}},
      /*takes_overrides=*/true,
      "kernels: forward and forward+backward time per shape of every gated-delta-rule backend\n"
      "  available on this machine, with tokens/s, TFLOP/s and GB/s (docs/delta_rule.md section 4 "
      "counts).\n"
      "layers:  each fused layer kernel (conv + SiLU, dynamic conv, L2 norm, gates, gated norm, "
      "RoPE,\n"
      "  SwiGLU, RMSNorm) beside the ATen composition it replaces, forward and forward+backward.\n"
      "train:   tokens/s and peak memory of the Rule 110 paper model (AGAG, width 256, window 24)\n"
      "  per number of sleep passes N, and tokens/s(N) * N / tokens/s(1).\n"
      "kernels and train take the ops keys of a config as overrides (configs/README.md):\n"
      "  model.gdn_kernel=fp32, model.gdn_scan_slice=32|64|128, model.fused_ops=false, ...\n"
      "pretrained: a real-size random bf16 checkpoint in the Hugging Face layout written, loaded\n"
      "  and exported (compared byte for byte), with the time and peak RSS of each phase.\n"
      "ops:     the gated delta rule's CPU backends (chunked, and the per-step reference), fp32,\n"
      "  forward and forward+backward, wall and process CPU time; --packed adds packed sequences\n"
      "  (8 of 2,000 to 3,300 tokens, 64 of 16 to 300): one cu_seqlens call vs padded to the\n"
      "  longest vs one call per sequence.",
      "hypnos_bench"};
  return spec;
}

int run(const hypnos::cli::ParsedArgs& args) {
  namespace bench = hypnos::bench;
  const std::string what = args.positionals[0];
  if (what == "kernels") return bench::run_kernels_bench(args.flags, args.overrides);
  if (what == "train") return bench::run_train_bench(args.flags, args.overrides);
  // layers runs both the fused kernel and its composition per row; pretrained and ops have no op
  // choice (ops names its backends itself).
  if (!args.overrides.empty()) {
    throw UsageError(what + " takes no overrides, got '" + args.overrides[0] + "'");
  }
  if (what == "layers") return bench::run_layers_bench(args.flags);
  if (what == "pretrained") return bench::run_pretrained_bench(args.flags);
  if (what == "ops") return bench::run_ops_bench(args.flags);
  throw UsageError("unknown benchmark '" + what +
                   "' (expected kernels, layers, train, pretrained or ops)");
}

}  // namespace

int main(int argc, char** argv) {
  const auto& spec = bench_spec();
  const int usage_error = hypnos::config::kConfigErrorExitCode;
  if (argc < 2) {
    std::cerr << hypnos::cli::usage(spec);
    return usage_error;
  }
  try {
    const auto args = hypnos::cli::parse_args(spec, argc, argv, 1);
    if (args.help) {
      std::cout << hypnos::cli::usage(spec);
      return 0;
    }
    return run(args);
  } catch (const UsageError& e) {
    std::cerr << "hypnos_bench: " << e.what() << "\n\n" << hypnos::cli::usage(spec);
    return usage_error;
  } catch (const hypnos::config::ConfigError& e) {  // a bad override
    std::cerr << "hypnos_bench: " << e.what() << "\n";
    return usage_error;
  } catch (const std::invalid_argument& e) {  // a bad flag value, checked by the bench itself
    std::cerr << "hypnos_bench: " << e.what() << "\n";
    return usage_error;
  } catch (const std::exception& e) {
    std::cerr << "hypnos_bench: error: " << e.what() << "\n";
    return 1;
  }
}
