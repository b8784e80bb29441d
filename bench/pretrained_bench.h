// `hypnos_bench pretrained`: a real-size checkpoint (Jet-Nemotron-2B, Ouro-1.4B, Ouro-1.4B with six
// JetBlocks; random bf16 weights in the Hugging Face layout) written, loaded and exported, with the
// time and peak host memory (getrusage ru_maxrss) of each phase, each phase in a fresh process.
#pragma once
#include <map>
#include <string>

namespace hypnos::bench {

/// flags: "--family" (jet_nemotron_2b | ouro_1p4b | ouro_1p4b_jet | all), "--dir" (scratch folder,
/// removed afterwards), "--shards", "--fp32-first" (also the baseline: build in fp32, convert,
/// load), "--quick" (2 layers and a 4096-token vocabulary: a smoke run).
int run_pretrained_bench(const std::map<std::string, std::string>& flags);

}  // namespace hypnos::bench
