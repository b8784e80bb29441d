// `hypnos_bench ops`: the gated delta rule's CPU backends timed side by side: the chunked form
// (GdnBackend::kChunked, the CPU training path) against the per-step definition (kReference).
#pragma once
#include <map>
#include <string>

namespace hypnos::bench {

/// Prints, per shape (B, T, H, K, V) and backend, the median forward (no grad) and forward+backward
/// (the gradient of every input for random output cotangents) in wall ms and process CPU ms (the
/// steadier figure on a shared machine: other processes stretch wall time, not the work done).
/// fp32 on the CPU, fla's test distribution, an initial state. Options: --reps N (default 5),
/// --quick (the sleep-window shape only), --packed (then also packed variable-length sequences
/// through the chunked backend, 8 of 2,000 to 3,300 tokens and 64 of 16 to 300: packed with
/// cu_seqlens against padded to the longest and against one call per sequence; --quick shortens
/// them 20x). Returns 0; a --reps that is not a positive
/// integer throws std::invalid_argument.
int run_ops_bench(const std::map<std::string, std::string>& flags);

}  // namespace hypnos::bench
