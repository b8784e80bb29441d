// `hypnos bench kernels`: times the CUDA gated delta rule next to the ATen chunked backend on the
// same GPU in the same run (docs/delta_rule.md section 6 item 7).
#pragma once
#include <map>
#include <string>

namespace hypnos::bench {

/// Prints, per shape (B, T, H, K = V), forward and forward+backward medians (CUDA events, --reps
/// timed runs after warm-up), tokens/s, TFLOP/s and GB/s by docs/delta_rule.md section 4's counts,
/// for the CUDA kernels and for GdnBackend::kChunked. Options: --reps N (default 20),
/// --no-baseline, --quick (the two small shapes only), --fp32-too (also the CUDA-core kernels,
/// HYPNOS_GDN_KERNEL=fp32, next to those the environment selects; rows say cuda-tc or cuda-fp32).
/// Returns 0, or 1 without a CUDA device; a --reps that is not a positive integer throws
/// std::invalid_argument (the command line reports it as a usage error).
int run_kernels_bench(const std::map<std::string, std::string>& flags);

}  // namespace hypnos::bench
