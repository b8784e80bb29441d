// The `run:` and `train:` config sections: what a training run is (seed, where it writes) and how
// its loop behaves (steps, batch, evaluation, checkpoints, precision, failure policies).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "hypnos/config/fields.h"
#include "hypnos/sleep/sleep_options.h"

namespace hypnos::train {

enum class Device { kAuto, kCpu, kCuda };
enum class Precision { kFp32, kBf16 };
enum class ParamDtype { kFp32, kBf16 };
enum class NonFinitePolicy { kStop, kSkip };
/// Which parameters the optimizer trains (the rest are frozen: no gradient, no optimizer state).
enum class Trainable { kAll, kInserted };

struct RunOptions {
  int64_t seed = 0;  ///< model init and data order. Default: 0
  std::string out_dir =
      "runs";  ///< parent of run directories when --out is not given. Default: runs
  Device device = Device::kAuto;  ///< auto: CUDA when available. Default: auto

  template <class V>
  void visit(V& v) {
    v.field("seed", seed, "seed of the model initialisation and of the data",
            config::Range{0, 1e15});
    v.field("out_dir", out_dir, "run directories go under this folder unless --out is given");
    v.field("device", device, "auto | cpu | cuda");
  }
};

struct TrainOptions {
  int64_t steps = 600;  ///< optimizer steps (set by epochs when > 0). Default: 600
  /// Passes over a finite training set (task.token_file or task.data_file): train.steps becomes
  /// ceil(epochs x the file's problems / batch_size); 0 = train.steps as given. Default: 0
  int64_t epochs = 0;
  int64_t batch_size = 512;  ///< global sequences per step (all ranks). Default: 512
  int64_t grad_accum = 1;    ///< micro-batches per step (batch_size must divide). Default: 1
  int64_t eval_every = 100;  ///< steps between evaluations; 0 = only at the end. Default: 100
  /// Also evaluate the starting weights, before step 1 (a fine-tuning run's "before" figure:
  /// model.from's or train.init_from's weights). Done once per run: a resume does not repeat it
  /// once its record is in metrics.jsonl. Default: false
  bool eval_at_start = false;
  int64_t eval_examples = 2048;    ///< test examples per evaluation. Default: 2048
  int64_t eval_batch_size = 512;   ///< sequences per evaluation forward. Default: 512
  int64_t log_every = 10;          ///< steps between metrics.jsonl train records. Default: 10
  int64_t checkpoint_every = 100;  ///< steps between checkpoints; 0 = only at the end. Default: 100
  int64_t keep_checkpoints = 3;    ///< newest checkpoints kept on disk. Default: 3
  /// train.truncate_every and train.recompute (docs/design.md 1.7). Default: full BPTT, no
  /// recompute.
  sleep::BackpropOptions backprop;
  Precision precision =
      Precision::kBf16;  ///< autocast dtype on CUDA (CPU always fp32). Default: bf16
  /// How the model's parameters are stored (docs/design.md 2.2): fp32, or bf16 with fp32 gradients
  /// accumulated over the micro-batches and fp32 master weights in the optimizer (this rank's share
  /// under shard_optimizer). bf16 needs precision: bf16. Default: fp32
  ParamDtype param_dtype = ParamDtype::kFp32;
  /// CUDA only: capture each micro-batch's forward + backward as a CUDA graph and replay it
  /// (train::MicroBatchStep). Default: true
  bool cuda_graph = true;
  /// Data parallel runs: each rank keeps and updates the optimizer state of its share of the
  /// parameters (whole parameters, balanced by size), then broadcasts them (ZeRO-1,
  /// docs/design.md 2.1). No effect in a single process. Default: false
  bool shard_optimizer = false;
  NonFinitePolicy nonfinite = NonFinitePolicy::kStop;  ///< on a NaN/Inf loss or grad. Default: stop
  int64_t max_skips = 5;  ///< consecutive skipped steps before stopping. Default: 5
  /// all: every parameter; inserted: only the JetBlocks inserted into a pretrained model
  /// (model.inserted_jet_after), the rest frozen (the first stage of the paper's sliding-window
  /// Ouro recipe). Default: all
  Trainable trainable = Trainable::kAll;
  /// A hypnos run directory whose newest verified checkpoint gives the starting weights (weights
  /// only: the optimizer, step count and data order start fresh), after model.from's. Its model
  /// must be this run's. A resumed run loads its own checkpoint instead. Default: ""
  std::string init_from;

  template <class V>
  void visit(V& v) {
    v.field("steps", steps, "optimizer steps", config::Range{0, 1e12});
    v.field("epochs", epochs,
            "passes over a file's training problems; > 0 sets train.steps (0: train.steps)",
            config::Range{0, 1e6});
    v.field("batch_size", batch_size, "global sequences per optimizer step", config::Range{1, 1e9});
    v.field("grad_accum", grad_accum, "micro-batches per step (divides batch_size)",
            config::Range{1, 1e6});
    v.field("eval_every", eval_every, "steps between evaluations (0: only at the end)",
            config::Range{0, 1e12});
    v.field("eval_at_start", eval_at_start,
            "also evaluate the starting weights, before the first step (once per run)");
    v.field("eval_examples", eval_examples, "test examples per evaluation", config::Range{0, 1e9});
    v.field("eval_batch_size", eval_batch_size, "sequences per evaluation forward",
            config::Range{1, 1e9});
    v.field("log_every", log_every, "steps between train records in metrics.jsonl",
            config::Range{1, 1e12});
    v.field("checkpoint_every", checkpoint_every, "steps between checkpoints (0: only at the end)",
            config::Range{0, 1e12});
    v.field("keep_checkpoints", keep_checkpoints, "newest checkpoints kept", config::Range{1, 1e6});
    backprop.visit(v);  // flat: train.truncate_every, train.recompute
    v.field("precision", precision, "fp32 | bf16 (autocast dtype on CUDA; CPU runs fp32)");
    v.field("param_dtype", param_dtype,
            "fp32 | bf16 (bf16 weights, fp32 gradients and master weights in the optimizer)");
    v.field("cuda_graph", cuda_graph,
            "CUDA: replay each micro-batch's forward + backward as a captured CUDA graph");
    v.field("shard_optimizer", shard_optimizer,
            "data parallel: each rank keeps the optimizer state of its share of the parameters");
    v.field("nonfinite", nonfinite, "on a non-finite loss or gradient: stop | skip");
    v.field("max_skips", max_skips, "consecutive skipped steps that stop the run",
            config::Range{1, 1e9});
    v.field("trainable", trainable,
            "parameters trained: all | inserted (only model.inserted_jet_after's JetBlocks)");
    v.field("init_from", init_from,
            "run directory whose newest checkpoint gives the starting weights, fresh optimizer "
            "(\"\" = none)");
  }
};

}  // namespace hypnos::train

namespace hypnos::config {
template <>
struct EnumNames<train::Device> {
  static constexpr std::array<std::string_view, 3> names{"auto", "cpu", "cuda"};
};
template <>
struct EnumNames<train::Precision> {
  static constexpr std::array<std::string_view, 2> names{"fp32", "bf16"};
};
template <>
struct EnumNames<train::ParamDtype> {
  static constexpr std::array<std::string_view, 2> names{"fp32", "bf16"};
};
template <>
struct EnumNames<train::NonFinitePolicy> {
  static constexpr std::array<std::string_view, 2> names{"stop", "skip"};
};
template <>
struct EnumNames<train::Trainable> {
  static constexpr std::array<std::string_view, 2> names{"all", "inserted"};
};
}  // namespace hypnos::config
