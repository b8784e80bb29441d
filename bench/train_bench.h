// `hypnos bench train`: training throughput and peak memory of the Rule 110 paper model per number
// of sleep passes N (issue: at most linear growth in N; tokens/s(N) * N / tokens/s(1) is printed).
#pragma once
#include <map>
#include <string>

namespace hypnos::bench {

/// flags: "--passes" (e.g. "1,2,4"), "--batch", "--device", "--repeats", "--quick".
int run_train_bench(const std::map<std::string, std::string>& flags);

}  // namespace hypnos::bench
