// `hypnos_bench kernels`: times the CUDA gated delta rule next to the ATen chunked backend on the
// same GPU in the same run (docs/delta_rule.md section 6 item 7).
#pragma once
#include <map>
#include <string>
#include <vector>

namespace hypnos::bench {

/// Prints, per shape (B, T, H, K = V), forward and forward+backward medians (CUDA events, --reps
/// timed runs after warm-up), tokens/s, TFLOP/s and GB/s by docs/delta_rule.md section 4's counts,
/// for the CUDA kernels and for GdnBackend::kChunked. Options: --reps N (default 20),
/// --no-baseline, --quick (the two small shapes only), --fp32-too (also the CUDA-core kernels,
/// model.gdn_kernel=fp32, next to those the overrides select; rows say cuda-tc or cuda-fp32).
/// `overrides`: the model.* ops keys (bench/ops_overrides.h), e.g. model.gdn_scan_slice=128.
/// Returns 0, or 1 without a CUDA device; a --reps that is not a positive integer throws
/// std::invalid_argument (the command line reports it as a usage error), a bad override
/// config::ConfigError.
int run_kernels_bench(const std::map<std::string, std::string>& flags,
                      const std::vector<std::string>& overrides);

}  // namespace hypnos::bench
