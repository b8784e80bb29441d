// `hypnos_bench train`: training throughput and peak memory of the Rule 110 paper model per number
// of sleep passes N (issue: at most linear growth in N; tokens/s(N) * N / tokens/s(1) is printed).
#pragma once
#include <map>
#include <string>
#include <vector>

namespace hypnos::bench {

/// flags: "--passes" (e.g. "1,2,4"), "--batch", "--device", "--repeats", "--quick", "--modes",
/// "--profile", "--no-update" (forward + backward only: no clipping, no optimizer step).
/// overrides: the model.* ops keys (bench/ops_overrides.h), e.g. model.fused_ops=false for the
/// ATen compositions of the fused layer ops; each child process gets them too.
int run_train_bench(const std::map<std::string, std::string>& flags,
                    const std::vector<std::string>& overrides);

}  // namespace hypnos::bench
