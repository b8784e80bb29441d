// `hypnos_bench pretrained`: real-size pretrained checkpoints through the loader. Each phase runs
// in a fresh child process (this program again, with --child --phase PHASE), so that its ru_maxrss
// is the peak of that phase alone:
//   write       build the model in bf16 from the real config.json (random weights: the modules'
//               own initialisation, seed 0) and save it in the Hugging Face layout;
//   load        nn::load_pretrained in bf16 (built in bf16, then tensor by tensor), then export
//               with nn::save_hf_checkpoint and compare every exported file with the written one
//               byte for byte (the round trip);
//   fp32_first  the former way, as a baseline: build in fp32, convert to bf16, load.
// The real configs are those of bench/reference/pretrained_reference.py (real_configs(); Ouro with
// six JetBlocks 16 x 128, expand_v 1, after every fourth layer as its check() builds it).
#include "bench/pretrained_bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "bench/child_process.h"
#include "hypnos/io/durable.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/nn/hf_config.h"

namespace hypnos::bench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kJetNemotron2b = R"({
  "model_type": "jet_nemotron", "architectures": ["JetNemotronForCausalLM"],
  "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
  "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
  "rope_theta": 1000000.0, "rope_scaling": null, "rms_norm_eps": 1e-06, "hidden_act": "silu",
  "max_position_embeddings": 4096, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "layer_types": ["jet", "jet", "jet", "jet", "jet", "jet", "jet", "jet", "jet", "jet", "jet",
                  "jet", "jet", "jet", "attn", "jet", "jet", "jet", "jet", "attn", "swa", "swa",
                  "jet", "jet", "jet", "jet", "jet", "jet"],
  "efficient_attention_config": {
    "swa": {"window_size": 1152},
    "jet": {"mode": "chunk", "num_heads": 12, "head_dim": 96, "expand_v": 2.6666666667,
            "conv_size": 4, "dconv_generator_reduction": 8, "dconv_implementation": "naive",
            "norm_eps": "1e-5"}}
})";

const char* kOuro1p4b = R"({
  "model_type": "ouro", "architectures": ["OuroForCausalLM"],
  "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
  "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 128, "vocab_size": 49152,
  "rope_theta": 1000000.0, "rope_scaling": null, "rms_norm_eps": 1e-06, "hidden_act": "silu",
  "max_position_embeddings": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "total_ut_steps": 4, "early_exit_threshold": 1.0, "use_sliding_window": false
})";

/// The config.json of `family`; --quick keeps 2 layers (and their layer_types) and 4096 tokens.
std::string family_config(const std::string& family, bool quick) {
  json c;
  if (family == "jet_nemotron_2b") {
    c = json::parse(kJetNemotron2b);
  } else if (family == "ouro_1p4b" || family == "ouro_1p4b_jet") {
    c = json::parse(kOuro1p4b);
    if (family == "ouro_1p4b_jet") {
      c["jet_layers_after"] = {3, 7, 11, 15, 19, 23};
      c["efficient_attention_config"]["jet"] = {{"num_heads", 16},
                                                {"head_dim", 128},
                                                {"expand_v", 1.0},
                                                {"conv_size", 4},
                                                {"dconv_generator_reduction", 8},
                                                {"norm_eps", "1e-5"}};
    }
  } else {
    throw std::invalid_argument(
        "--family expects jet_nemotron_2b, ouro_1p4b, ouro_1p4b_jet or all, got '" + family + "'");
  }
  if (quick) {
    c["num_hidden_layers"] = 2;
    c["vocab_size"] = 4096;
    if (c.contains("layer_types")) c["layer_types"] = {"jet", "swa"};
    if (c.contains("jet_layers_after")) c["jet_layers_after"] = {1};
  }
  return c.dump(2) + "\n";
}

double peak_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

double current_mib() {
  std::ifstream statm("/proc/self/statm");
  long long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1048576.0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Every file of checkpoint `a` equals the file of the same name in `b`, byte for byte (read in
/// 16 MiB pieces).
bool same_files(const fs::path& a, const fs::path& b) {
  std::vector<char> x(16 << 20), y(16 << 20);
  for (const auto& e : fs::directory_iterator(a)) {
    const fs::path other = b / e.path().filename();
    if (!fs::exists(other) || fs::file_size(e.path()) != fs::file_size(other)) return false;
    std::ifstream fa(e.path(), std::ios::binary), fb(other, std::ios::binary);
    while (fa && fb) {
      fa.read(x.data(), static_cast<std::streamsize>(x.size()));
      fb.read(y.data(), static_cast<std::streamsize>(y.size()));
      if (fa.gcount() != fb.gcount() || std::memcmp(x.data(), y.data(), fa.gcount()) != 0) {
        return false;
      }
    }
  }
  return true;
}

/// One phase in this process; prints "RESULT <phase> <seconds> <peak MiB> <extra...>" lines.
void run_phase(const std::string& phase, const std::string& family, const fs::path& dir,
               int64_t shards, bool quick) {
  const fs::path ckpt = dir / "checkpoint";
  const double rss0 = current_mib();
  const auto t0 = std::chrono::steady_clock::now();
  if (phase == "write") {
    const std::string config_json = family_config(family, quick);
    const nn::HfConfig config = nn::parse_hf_config(config_json, family);
    torch::manual_seed(0);
    nn::HybridLM model = nn::build_in_dtype(config.options, at::kBFloat16);
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();
    const double built = seconds_since(t0);
    nn::save_hf_checkpoint(model, ckpt, config_json, shards);
    uintmax_t bytes = 0;
    for (const auto& e : fs::directory_iterator(ckpt)) bytes += fs::file_size(e.path());
    std::printf("RESULT write %.3f %.1f %.1f %lld %llu %.3f\n", seconds_since(t0), peak_mib(), rss0,
                static_cast<long long>(params), static_cast<unsigned long long>(bytes), built);
  } else if (phase == "load") {
    nn::PretrainedModel m = nn::load_pretrained(ckpt, at::kBFloat16);
    std::printf("RESULT load %.3f %.1f %.1f %lld\n", seconds_since(t0), peak_mib(), rss0,
                static_cast<long long>(m.report.loaded));
    std::fflush(stdout);
    const auto t1 = std::chrono::steady_clock::now();
    nn::save_hf_checkpoint(m.model, dir / "export", m.config.json, shards);
    const double export_s = seconds_since(t1);
    std::printf("RESULT export %.3f %.1f %.1f %d\n", export_s, peak_mib(), rss0,
                same_files(ckpt, dir / "export") && same_files(dir / "export", ckpt) ? 1 : 0);
    io::remove_tree(dir / "export");
  } else if (phase == "fp32_first") {
    const nn::HfConfig config = nn::read_hf_config(ckpt);
    nn::HybridLM model(config.options);  // fp32
    model->to(at::kBFloat16);
    const nn::LoadReport report = nn::load_hf_weights(model, ckpt, config.optional_keys);
    std::printf("RESULT fp32_first %.3f %.1f %.1f %lld\n", seconds_since(t0), peak_mib(), rss0,
                static_cast<long long>(report.loaded));
  } else {
    throw std::invalid_argument("--phase expects write, load or fp32_first, got '" + phase + "'");
  }
}

/// Runs this program again for one phase; returns its RESULT lines (throws when it fails).
std::vector<std::string> phase_in_child(const std::string& phase, const std::string& family,
                                        const fs::path& dir, int64_t shards, bool quick) {
  std::vector<std::string> args{"/proc/self/exe", "pretrained", "--family", family,
                                "--dir",          dir.string(), "--shards", std::to_string(shards),
                                "--child",        "--phase",    phase};
  if (quick) args.push_back("--quick");
  const ChildResult child = run_self(args, "pretrained");
  if (!child.ok) {
    throw std::runtime_error("pretrained: the " + phase + " phase of " + family + " failed:\n" +
                             child.output);
  }
  std::vector<std::string> lines;
  std::istringstream in(child.output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("RESULT ", 0) == 0) lines.push_back(line.substr(7));
  }
  return lines;
}

}  // namespace

int run_pretrained_bench(const std::map<std::string, std::string>& flags) {
  auto get = [&](const std::string& k, const std::string& d) {
    auto it = flags.find(k);
    return it == flags.end() ? d : it->second;
  };
  const bool quick = flags.count("--quick") > 0;
  const std::string family = get("--family", "all");
  const fs::path root =
      get("--dir", (fs::temp_directory_path() / "hypnos_bench_pretrained").string());
  const int64_t shards = std::stoll(get("--shards", "2"));
  if (shards < 1) throw std::invalid_argument("--shards expects a count >= 1");
  if (flags.count("--child")) {
    run_phase(get("--phase", ""), family, root, shards, quick);
    return 0;
  }
  const std::vector<std::string> families =
      family == "all" ? std::vector<std::string>{"jet_nemotron_2b", "ouro_1p4b", "ouro_1p4b_jet"}
                      : std::vector<std::string>{family};
  for (const auto& f : families) family_config(f, quick);  // a wrong name fails before any work
  std::printf(
      "real-size pretrained checkpoints%s, bf16, %lld shard(s), in %s; one process per "
      "phase; MiB of host memory (ru_maxrss; 'before' = RSS when the phase began)\n",
      quick ? " (--quick: 2 layers, 4096 tokens)" : "", static_cast<long long>(shards),
      root.string().c_str());
  std::printf("%-16s %-11s %9s %10s %10s  %s\n", "family", "phase", "seconds", "peak MiB", "before",
              "what");
  for (const auto& f : families) {
    const fs::path dir = root / f;
    io::remove_tree(dir);
    fs::create_directories(dir);
    std::vector<std::string> phases{"write", "load"};
    if (flags.count("--fp32-first")) phases.push_back("fp32_first");
    for (const auto& phase : phases) {
      for (const auto& line : phase_in_child(phase, f, dir, shards, quick)) {
        std::istringstream s(line);
        std::string name, what;
        double secs = 0, peak = 0, before = 0;
        s >> name >> secs >> peak >> before;
        if (name == "write") {
          long long params = 0;
          unsigned long long bytes = 0;
          double built = 0;
          s >> params >> bytes >> built;
          char text[160];
          std::snprintf(text, sizeof text, "%.4fB parameters built in %.1f s, %.2f GB on disk",
                        static_cast<double>(params) / 1e9, built, static_cast<double>(bytes) / 1e9);
          what = text;
        } else if (name == "export") {
          int same = 0;
          s >> same;
          what = same ? "files identical to the loaded ones" : "FILES DIFFER";
        } else {
          long long tensors = 0;
          s >> tensors;
          what = std::to_string(tensors) + " tensors";
        }
        std::printf("%-16s %-11s %9.2f %10.1f %10.1f  %s\n", f.c_str(), name.c_str(), secs, peak,
                    before, what.c_str());
        std::fflush(stdout);
        if (name == "export" && what == "FILES DIFFER") {
          io::remove_tree(dir);
          throw std::runtime_error("pretrained: " + f + ": the export differs from the checkpoint");
        }
      }
    }
    io::remove_tree(dir);
  }
  ::rmdir(root.c_str());  // when this run made it and it is empty now
  return 0;
}

}  // namespace hypnos::bench
