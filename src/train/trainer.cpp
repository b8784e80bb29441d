// The training loop. Reads top to bottom: set up (config -> device -> run directory lock -> what
// the run resumes from -> run directory -> model -> task -> optimizer -> resume), then one short
// loop of steps, evaluations and checkpoints. The window/sleep engine (sleep/window_loop) runs
// inside each step; only rank 0 writes files.
#include "hypnos/train/trainer.h"

#include <chrono>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#ifdef HYPNOS_WITH_CUDA_TORCH
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "hypnos/config/error.h"
#include "hypnos/io/durable.h"
#include "hypnos/io/jsonl.h"
#include "hypnos/log.h"
#include "hypnos/nn/hf_checkpoint.h"
#include "hypnos/tasks/batch.h"
#include "hypnos/train/checkpoint.h"
#include "hypnos/train/device.h"
#include "hypnos/train/distributed.h"
#include "hypnos/train/evaluate.h"
#include "hypnos/train/micro_batch_step.h"
#include "hypnos/train/optimizer_sharding.h"
#include "hypnos/train/run_directory.h"
#include "hypnos/train/trainable.h"
#include "hypnos/train/training_model.h"
#include "train/fault_injection.h"
#include "train/out_of_memory.h"

namespace hypnos::train {
namespace fs = std::filesystem;

namespace {

// The one process-wide flag: set by the SIGTERM/SIGINT handler, read between steps and, in a
// single-process run, between micro-batches and before each autograd node of a step.
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int signal) {
  g_stop_signal = signal;
}
bool stop_requested() {
  return g_stop_signal != 0;
}

// Whether metrics.jsonl holds an evaluation record of `step` (a torn or foreign line is not one).
bool has_eval_record_at_step(const fs::path& metrics, int64_t step) {
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object() && record.value("kind", "") == "eval" &&
        record.value("step", int64_t{-1}) == step) {
      return true;
    }
  }
  return false;
}

using Clock = std::chrono::steady_clock;
// Seconds without a step line after which the next step prints one (the first record of a
// GPU-sized config on a CPU would otherwise come after ten minutes of silence).
constexpr double kQuietSeconds = 20.0;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string format_duration(double s) {
  const auto total = static_cast<int64_t>(s);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02lld:%02lld:%02lld", static_cast<long long>(total / 3600),
                static_cast<long long>(total / 60 % 60), static_cast<long long>(total % 60));
  return buf;
}

// The CUDA caching allocator's peak of allocated bytes since the process started, in GB (1e9):
// weights, gradients, masters, optimizer state and activations at their largest. Negative off CUDA.
double cuda_peak_gb(const at::Device& device) {
#ifdef HYPNOS_WITH_CUDA_TORCH
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return static_cast<double>(stats.allocated_bytes[aggregate].peak) / 1e9;
  }
#endif
  (void)device;
  return -1.0;
}

io::JsonRecord metrics_record(const tasks::BucketMetrics& m) {
  io::JsonRecord r;
  r.add("exact", m.exact_accuracy())
      .add("token_acc", m.token_accuracy())
      .add("ce", m.mean_ce())
      .add("count", m.groups);
  return r;
}

class Trainer {
 public:
  Trainer(const RunConfig& config, const TrainRequest& request);
  /// The exit code; an out-of-memory error becomes one line naming the phase and the config (R11).
  int run();

 private:
  /// Set up, resume, then the loop: each named step below, in this order.
  int run_unguarded();
  /// The device and the process group (a bad RANK or WORLD_SIZE is a usage error).
  void join_group();
  /// What a resume starts from: the newest checkpoint that verifies (none: step 0), the corrupt
  /// ones newer than it, and the resumable config changes. Rank 0 takes the run directory's lock.
  struct ResumePoint {
    std::optional<fs::path> checkpoint;
    std::vector<std::pair<fs::path, std::string>> rejected;  // newest first
    std::vector<ConfigChange> changes;
  };
  ResumePoint find_resume_point();
  /// The model (model.from's weights, then train.init_from's unless a checkpoint of this run will
  /// replace them), the frozen parameters of train.trainable, the optimizer over the rest.
  void build_model_and_optimizer(const ResumePoint& resume);
  /// train.init_from: the weights of that run's newest verified checkpoint (weights only).
  void load_initial_weights();
  void resume_from(const ResumePoint& point);
  void drop_metrics_after_resumed_step();
  /// Rank 0's weights everywhere, the optimizer sharded if asked, the start or resume event.
  void synchronise_ranks();
  /// Steps until train.steps, a stop signal or a non-finite stop; the exit code.
  int train_loop();
  bool ranks_agree_to_stop() const;
  /// train.eval_at_start: at step 0, unless an earlier start of this run recorded it (every rank
  /// gets rank 0's answer, since the evaluation ends in a barrier).
  bool start_evaluation_due() const;
  /// After a non-finite loss or gradient under train.nonfinite=stop.
  int stop_before_update();
  void evaluate_and_checkpoint_when_due();
  /// The last evaluation and checkpoint, the finish event.
  int finish();
  int report_out_of_memory(const std::string& what);
  /// Writes config.yaml, command.txt, git_commit.txt and opens the logs (rank 0). A new run whose
  /// start fails there leaves nothing behind, so that starting it again is not refused.
  void start_run_directory(const std::vector<ConfigChange>& changes,
                           const std::vector<std::pair<fs::path, std::string>>& rejected);
  /// After a stop signal: checkpoints the last completed step and returns 128 + the signal.
  int stop_after_signal();
  enum class StepResult { kUpdated, kSkipped, kStop, kInterrupted };
  StepResult step();
  /// Training examples [first, first + size): the prefetched batch when it is that one.
  tasks::Batch train_batch(uint64_t first, int64_t size);
  void log_train(double loss, double grad_norm);
  /// A step line between train records once kQuietSeconds have passed without one.
  void log_slow_step(double loss);
  void evaluate_and_log();
  void save_checkpoint_now();
  void event(io::JsonRecord record);
  std::string config_summary() const;

  const RunConfig config_;
  const TrainRequest request_;
  const std::string config_yaml_;
  std::string phase_ = "setting up";  // named in out-of-memory errors (R11)
  DistributedContext dist_;
  std::optional<RunDirectoryLock> lock_;  // rank 0: held for the whole run
  at::Device device_ = at::kCPU;
  std::unique_ptr<tasks::Task> task_;
  nn::HybridLM model_{nullptr};
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<OptimizerSharding> sharding_;  // train.shard_optimizer in a data parallel run
  std::unique_ptr<Schedule> schedule_;
  std::unique_ptr<MicroBatchStep> micro_step_;
  std::optional<std::pair<uint64_t, tasks::Batch>> prefetched_;  // the next micro-batch, made early
  TrainingState state_;
  std::optional<io::JsonlWriter> metrics_, events_;  // rank 0 only
  Clock::time_point start_ = Clock::now();
  Clock::time_point log_start_ = Clock::now();
  Clock::time_point last_line_ = Clock::now();  // the last step line printed
  int64_t log_tokens_ = 0;
  int64_t last_saved_step_ = -1;
  int64_t last_eval_step_ = -1;
  std::string initial_checkpoint_;  // train.init_from's checkpoint the weights came from
  int64_t trainable_parameters_ = 0;
};

Trainer::Trainer(const RunConfig& config, const TrainRequest& request)
    : config_(config), request_(request), config_yaml_(run_config_yaml(config)) {}

int Trainer::run() {
  try {
    return run_unguarded();
  } catch (const std::exception& e) {
    if (auto what = out_of_memory_message(e)) return report_out_of_memory(*what);
    throw;
  }
}

int Trainer::report_out_of_memory(const std::string& what) {
  log::progress_done();
  std::fprintf(stderr,
               "hypnos train: out of memory while %s: %s [model.d_model=%lld model.pattern=%s "
               "train.batch_size=%lld train.grad_accum=%lld sleep.window=%lld "
               "sleep.n_passes=%lld]\n",
               phase_.c_str(), what.c_str(), static_cast<long long>(config_.model.d_model),
               config_.model.pattern.c_str(), static_cast<long long>(config_.train.batch_size),
               static_cast<long long>(config_.train.grad_accum),
               static_cast<long long>(config_.sleep.window),
               static_cast<long long>(config_.sleep.n_passes));
  if (events_) event(io::JsonRecord().add("event", "out_of_memory").add("phase", phase_));
  return kExitOutOfMemory;
}

int Trainer::run_unguarded() {
  join_group();
  const ResumePoint resume = find_resume_point();
  if (dist_.is_main()) start_run_directory(resume.changes, resume.rejected);
  build_model_and_optimizer(resume);
  if (request_.resume) resume_from(resume);
  synchronise_ranks();
  return train_loop();
}

int Trainer::train_loop() {
  g_stop_signal = 0;
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  if (start_evaluation_due()) evaluate_and_log();
  start_ = log_start_ = last_line_ = Clock::now();
  while (state_.step < config_.train.steps) {
    if (ranks_agree_to_stop()) return stop_after_signal();
    phase_ = "training step " + std::to_string(state_.step + 1);
    const StepResult result = step();
    if (result == StepResult::kInterrupted) return stop_after_signal();
    if (result == StepResult::kStop) return stop_before_update();
    evaluate_and_checkpoint_when_due();  // a skipped step counts: they are due as usual
  }
  return finish();
}

void Trainer::join_group() {
  // Config -> device and process group. A bad RANK or WORLD_SIZE is a usage error, like a bad key.
  DistributedEnvironment env;
  try {
    env = DistributedEnvironment::from_process();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("usage error: ") + e.what());
  }
  device_ = resolve_device(config_.run.device, env.local_rank);
  dist_ = DistributedContext(env, config_.distributed, device_);
  // float32 matmuls outside autocast (Muon's Newton-Schulz) on TF32 tensor cores, as the
  // reference sets them (torch.backends.cuda.matmul.allow_tf32).
  if (device_.is_cuda()) at::globalContext().setAllowTF32CuBLAS(true);
  const int64_t per_step = dist_.world_size() * config_.train.grad_accum;
  if (config_.train.batch_size % per_step != 0) {
    throw config::ConfigError(
        "config error: train.batch_size (" + std::to_string(config_.train.batch_size) +
        ") must be divisible by world size x train.grad_accum (" + std::to_string(per_step) + ")");
  }
}

Trainer::ResumePoint Trainer::find_resume_point() {
  // The run directory: one writer at a time (a second one stops here, exit 2), a new run never
  // lands on an old one, and a resume starts from the newest checkpoint that verifies, with the
  // config that checkpoint was trained with; all of it decided before anything is written.
  // Only rank 0 checks the directory: the others could already see the config.yaml it writes.
  if (dist_.is_main()) {
    lock_.emplace(request_.run_dir);
    check_run_directory(request_.run_dir, request_.resume);
  }
  ResumePoint point;
  if (!request_.resume) return point;
  point.checkpoint = find_latest_valid_checkpoint(
      request_.run_dir, [&](const fs::path& dir, const std::string& problem) {
        point.rejected.emplace_back(dir, problem);
      });
  const std::optional<fs::path>& from = point.checkpoint;
  const fs::path saved = from && fs::exists(*from / "config.yaml")
                             ? *from / "config.yaml"
                             : request_.run_dir / "config.yaml";
  const std::string what = from && saved.parent_path() == *from
                               ? "the config of checkpoint " + from->filename().string()
                               : saved.string();
  point.changes = check_resume_config(request_.run_dir, io::read_file(saved), what, config_yaml_,
                                      &is_resumable_key);
  return point;
}

void Trainer::build_model_and_optimizer(const ResumePoint& resume) {
  // Model and task. The seed fixes the initialisation; the data is a pure function of (seed,
  // index).
  phase_ = "building the model";
  torch::manual_seed(static_cast<uint64_t>(config_.run.seed));
  task_ = tasks::make_task(config_.task, static_cast<uint64_t>(config_.run.seed));
  // In train.param_dtype; pretrained weights load into it directly (no fp32 copy of a bf16 model).
  model_ = build_training_model(
      config_.model, config_.train.param_dtype,
      config_.model.from.empty() ? InitialWeights::kInitialise : InitialWeights::kLoadedNext);
  if (!config_.model.from.empty()) {  // pretrained weights (a resumed run then loads its own)
    phase_ = "loading the pretrained weights";
    const nn::LoadReport report = nn::load_hf_weights(
        model_, config_.model.from, nn::read_hf_config(config_.model.from).optional_keys);
    if (dist_.is_main()) std::printf("%s\n", report.text().c_str());
    log::info(report.text());
  }
  if (!config_.train.init_from.empty() && !resume.checkpoint) load_initial_weights();
  // Frozen before the optimizer is built: it then holds (and checkpoints) the trainable ones only.
  trainable_parameters_ = apply_trainable(model_, config_.train.trainable);
  if (config_.train.trainable != Trainable::kAll) {
    int64_t total = 0;
    for (const auto& p : model_->parameters()) total += p.numel();
    log::info("train.trainable = inserted: " + std::to_string(trainable_parameters_) + " of " +
              std::to_string(total) + " parameters are trained, the rest frozen");
  }
  model_->to(device_);
  model_->train();
  optimizer_ = std::make_unique<Optimizer>(split_parameters(*model_), config_.optim);
  auto step_options = MicroBatchStepOptions::from(config_);
  // Ranks must stop at the same step: only a single process stops inside one.
  if (!dist_.is_distributed()) step_options.interrupt = &stop_requested;
  micro_step_ = std::make_unique<MicroBatchStep>(model_, step_options, device_);
  schedule_ =
      std::make_unique<Schedule>(config_.schedule, std::max<int64_t>(config_.train.steps, 1));
}

void Trainer::load_initial_weights() {
  phase_ = "loading train.init_from's weights";
  const fs::path run = config_.train.init_from;
  const auto checkpoint =
      find_latest_valid_checkpoint(run, [](const fs::path& dir, const std::string& problem) {
        log::warn("train.init_from: skipped " + dir.string() + " (" + problem + ")");
      });
  if (!checkpoint) {
    throw config::ConfigError("config error: train.init_from = " + run.string() +
                              ": no verified checkpoint in that run directory");
  }
  const TrainingState source = load_checkpoint(*checkpoint, model_, nullptr);
  initial_checkpoint_ = checkpoint->string();
  const std::string what = "initial weights from " + initial_checkpoint_ + " (step " +
                           std::to_string(source.step) + "), fresh optimizer";
  if (dist_.is_main()) std::printf("%s\n", what.c_str());
  log::info(what);
}

void Trainer::resume_from(const ResumePoint& point) {
  // A checkpoint that verifies but does not fit throws CheckpointMismatch (never skipped:
  // training on from an older one would replace it); the corrupt ones newer than the one resumed
  // from are set aside, never deleted or overwritten by the saves of the steps that run again.
  phase_ = "loading a checkpoint";
  if (point.checkpoint) {
    std::vector<std::string> nonfinite;
    state_ = load_checkpoint(*point.checkpoint, model_, optimizer_.get(), &nonfinite);
    last_saved_step_ = state_.step;
    for (const auto& tensor : nonfinite) {
      log::warn("checkpoint " + point.checkpoint->string() +
                " holds non-finite weights: " + tensor);
      if (dist_.is_main()) {
        event(io::JsonRecord()
                  .add("event", "checkpoint_nonfinite")
                  .add("checkpoint", point.checkpoint->string())
                  .add("tensor", tensor));
      }
    }
    log::info("resumed from step " + std::to_string(state_.step));
  } else {
    log::warn("no valid checkpoint in " + request_.run_dir.string() + ": starting from step 0");
  }
  if (!dist_.is_main()) return;
  for (const auto& [dir, problem] : point.rejected) {
    const fs::path to = set_aside_checkpoint(dir);
    event(io::JsonRecord()
              .add("event", "checkpoint_set_aside")
              .add("checkpoint", dir.string())
              .add("to", to.string()));
  }
  drop_metrics_after_resumed_step();
}

void Trainer::drop_metrics_after_resumed_step() {
  // One history: the records after the step resumed from (step 0 when no checkpoint was valid)
  // were made by steps that run again (R5). They move to metrics.dropped.jsonl. The file is
  // rewritten (a new inode): reopen the writer, or the records of the resumed steps would go to
  // the replaced file and be lost.
  metrics_.reset();
  const fs::path archive = request_.run_dir / "metrics.dropped.jsonl";
  const size_t dropped = io::drop_jsonl_records_after(request_.run_dir / "metrics.jsonl", "step",
                                                      state_.step, archive);
  metrics_.emplace(request_.run_dir / "metrics.jsonl");
  if (dropped > 0) {
    log::info("moved " + std::to_string(dropped) + " metrics records after step " +
              std::to_string(state_.step) + " to " + archive.string());
    event(io::JsonRecord()
              .add("event", "metrics_dropped")
              .add("after_step", state_.step)
              .add("records", static_cast<int64_t>(dropped))
              .add("archive", archive.string()));
  }
}

void Trainer::synchronise_ranks() {
  dist_.broadcast_from_main(model_->parameters());  // every rank starts from rank 0's weights
  // Each rank keeps the state of its own parameters (the checkpoint loaded all of it).
  if (config_.train.shard_optimizer && dist_.is_distributed()) {
    sharding_ = std::make_unique<OptimizerSharding>(*optimizer_, dist_);
  }
  // What the step's weights, gradients, masters and optimizer state take on this rank (the
  // activations come on top): the figure that chooses train.param_dtype and shard_optimizer.
  MemoryFootprint memory = optimizer_->planned_footprint();
  for (const auto& p : model_->parameters()) {  // frozen (train.trainable): weights, nothing more
    if (p.requires_grad()) continue;
    memory.parameters += p.numel();
    memory.weights += p.numel() * static_cast<int64_t>(p.element_size());
  }
  if (dist_.is_main()) {
    io::JsonRecord record;
    record.add("event", request_.resume ? "resume" : "start")
        .add("step", state_.step)
        .add("device", device_.str())
        .add("world_size", dist_.world_size())
        .add("shard_optimizer", sharding_ != nullptr)
        .add("parameter_tensors", static_cast<int64_t>(model_->parameters().size()))
        .add("trainable_parameters", trainable_parameters_)
        .add("parameters", memory.parameters)
        .add("weights_bytes", memory.weights)
        .add("gradients_bytes", memory.gradients)
        .add("masters_bytes", memory.masters)
        .add("optimizer_state_bytes", memory.optimizer_state);
    if (!initial_checkpoint_.empty()) record.add("init_from", initial_checkpoint_);
    event(std::move(record));
  }
  log::info("training " + config_summary() + " on " + device_.str());
  log::info(std::string("memory") +
            (dist_.is_distributed() ? " of rank " + std::to_string(dist_.rank()) : "") + ": " +
            memory.text());
}

bool Trainer::ranks_agree_to_stop() const {
  // Ranks receive a signal between different steps; they must agree on the step they stop at,
  // or one would wait in the checkpoint's barrier while another waits in the next allreduce.
  const bool stop = g_stop_signal != 0;
  if (!dist_.is_distributed()) return stop;
  return dist_.average(stop ? 1.0 : 0.0) > 0.0;
}

bool Trainer::start_evaluation_due() const {
  if (!config_.train.eval_at_start || state_.step != 0) return false;
  // A run resumed at step 0 kept the records of step 0 (drop_metrics_after_resumed_step): the
  // start's evaluation is there unless the earlier process stopped before writing it.
  const bool recorded = request_.resume && dist_.is_main() &&
                        has_eval_record_at_step(request_.run_dir / "metrics.jsonl", 0);
  if (!dist_.is_distributed()) return !recorded;
  return dist_.average(recorded ? 1.0 : 0.0) == 0.0;
}

int Trainer::stop_before_update() {
  // The weights and optimizer state are still those of the last good step: keep them, so the run
  // can be resumed (e.g. with train.nonfinite=skip) without losing the steps since the last
  // checkpoint, and so the stop is provably before the update (R8).
  if (state_.step != last_saved_step_) save_checkpoint_now();
  return kExitNonFinite;
}

void Trainer::evaluate_and_checkpoint_when_due() {
  const int64_t s = state_.step;
  if (config_.train.eval_every > 0 && s % config_.train.eval_every == 0) evaluate_and_log();
  if (config_.train.checkpoint_every > 0 && s % config_.train.checkpoint_every == 0) {
    save_checkpoint_now();
  }
}

int Trainer::finish() {
  log::progress_done();
  if (last_eval_step_ != state_.step && config_.train.eval_examples > 0) evaluate_and_log();
  if (last_saved_step_ != state_.step) save_checkpoint_now();
  if (dist_.is_main()) event(io::JsonRecord().add("event", "finish").add("step", state_.step));
  return 0;
}

void Trainer::start_run_directory(const std::vector<ConfigChange>& changes,
                                  const std::vector<std::pair<fs::path, std::string>>& rejected) {
  const std::vector<std::string> present_before = run_files_present(request_.run_dir);
  try {
    prepare_run_directory(request_.run_dir, config_yaml_, request_.command_line, request_.resume);
    metrics_.emplace(request_.run_dir / "metrics.jsonl");
    events_.emplace(request_.run_dir / "events.jsonl");
    log::set_file((request_.run_dir / "train.log").string());
    for (const auto& c : changes)
      event(io::JsonRecord().add("event", "config_changed").add("change", c.str()));
  } catch (...) {
    if (!request_.resume) {
      metrics_.reset();
      events_.reset();
      log::set_file("");
      remove_failed_start(request_.run_dir, present_before, lock_->created_directory());
    }
    throw;
  }
  for (const auto& [dir, problem] : rejected) {
    std::fprintf(stderr, "%s (%s)\n", problem.c_str(), dir.string().c_str());
    log::warn("skipping checkpoint " + dir.string() + ": " + problem);
    event(io::JsonRecord()
              .add("event", "checkpoint_rejected")
              .add("checkpoint", dir.string())
              .add("problem", problem));
  }
}

int Trainer::stop_after_signal() {
  log::progress_done();
  const int signal = g_stop_signal != 0 ? static_cast<int>(g_stop_signal) : SIGTERM;
  const std::string why = g_stop_signal != 0 ? "signal " + std::to_string(signal)
                                             : std::string("a signal to another rank");
  log::warn(why + ": checkpointing at step " + std::to_string(state_.step) + " and exiting");
  if (state_.step != last_saved_step_) save_checkpoint_now();
  if (dist_.is_main()) {
    event(io::JsonRecord().add("event", "signal").add("step", state_.step).add("signal", signal));
  }
  return kExitSignalBase + signal;
}

tasks::Batch Trainer::train_batch(uint64_t first, int64_t size) {
  if (prefetched_ && prefetched_->first == first && prefetched_->second.tokens.size(0) == size) {
    tasks::Batch batch = std::move(prefetched_->second);
    prefetched_.reset();
    return batch;
  }
  return tasks::make_batch(*task_, tasks::Split::kTrain, first, size);
}

Trainer::StepResult Trainer::step() {
  const auto step_start = Clock::now();
  optimizer_->set_lr_multiplier(schedule_->multiplier(state_.step));
  // Graphed micro-batches accumulate into the same gradient tensors every step: zero them in place.
  optimizer_->zero_grad(/*set_to_none=*/!micro_step_->keeps_gradient_tensors());
  const int64_t local = config_.train.batch_size / dist_.world_size();
  const int64_t micro = local / config_.train.grad_accum;
  const uint64_t first =
      tasks::train_first_index(state_.step, dist_.rank(), local, dist_.world_size());
  at::Tensor loss_sum;  // on the device: read once, after the last micro-batch
  // A stop inside the step abandons it: the weights are still those of the last completed step.
  auto interrupted = [&] {
    optimizer_->zero_grad(/*set_to_none=*/!micro_step_->keeps_gradient_tensors());
    return StepResult::kInterrupted;
  };
  const bool interruptible = !dist_.is_distributed();
  for (int64_t a = 0; a < config_.train.grad_accum; ++a) {
    if (interruptible && stop_requested()) return interrupted();
    const tasks::Batch batch = train_batch(first + a * micro, micro);
    at::Tensor loss;
    try {
      loss = micro_step_->run(batch, fault::nonfinite_at(state_.step));
    } catch (const StepInterrupted&) {
      return interrupted();
    } catch (const std::exception&) {
      // The autograd engine rethrows a hook's exception as it was; should a version wrap it,
      // the stop flag still says why the step ended.
      if (interruptible && stop_requested()) return interrupted();
      throw;
    }
    // While the device works on this micro-batch (a replayed graph returns at once), make the next
    // one: examples are a pure function of their index, so this changes the order, not the data.
    const uint64_t next =
        a + 1 < config_.train.grad_accum
            ? first + (a + 1) * micro
            : tasks::train_first_index(state_.step + 1, dist_.rank(), local, dist_.world_size());
    if (state_.step + 1 < config_.train.steps || a + 1 < config_.train.grad_accum) {
      prefetched_.emplace(next, tasks::make_batch(*task_, tasks::Split::kTrain, next, micro));
    }
    loss_sum = a == 0 ? loss : loss_sum + loss;
  }
  double loss_value = loss_sum.item<double>();
  dist_.average_gradients(optimizer_->parameters());
  loss_value = dist_.average(loss_value);
  const double grad_norm = optimizer_->clip_gradients();  // the norm before clipping

  // A non-finite loss or gradient never reaches the weights (R8).
  if (!std::isfinite(loss_value) || !std::isfinite(grad_norm)) {
    optimizer_->zero_grad(/*set_to_none=*/!micro_step_->keeps_gradient_tensors());
    const bool stop = config_.train.nonfinite == NonFinitePolicy::kStop ||
                      state_.consecutive_skips + 1 > config_.train.max_skips;
    log::progress_done();
    log::error("non-finite " + std::string(std::isfinite(loss_value) ? "gradient" : "loss") +
               " at step " + std::to_string(state_.step + 1) +
               (stop ? ": stopping before the update" : ": skipping the update"));
    if (dist_.is_main()) {
      event(io::JsonRecord()
                .add("event", stop ? "nonfinite_stop" : "nonfinite_skip")
                .add("step", state_.step + 1)
                .add("loss", loss_value)
                .add("grad_norm", grad_norm)
                .add("consecutive_skips", state_.consecutive_skips + 1));
    }
    if (stop) return StepResult::kStop;
    ++state_.consecutive_skips;
    ++state_.step;  // the step's data is consumed: the next step draws the next batch
    return StepResult::kSkipped;
  }
  optimizer_->step();
  if (sharding_) sharding_->broadcast_parameters();  // each parameter from the rank that owns it
  state_.consecutive_skips = 0;
  ++state_.step;
  const int64_t tokens = config_.train.batch_size * task_->seq_len();
  state_.tokens += tokens;
  log_tokens_ += tokens;
  state_.elapsed_s += seconds_since(step_start);
  fault::point("step.after_update");
  if (state_.step % config_.train.log_every == 0 || state_.step == config_.train.steps) {
    log_train(loss_value, grad_norm);
  } else if (seconds_since(last_line_) >= kQuietSeconds) {
    log_slow_step(loss_value);
  }
  return StepResult::kUpdated;
}

void Trainer::log_slow_step(double loss) {
  last_line_ = Clock::now();
  if (!dist_.is_main()) return;
  // Between train records, when steps are slow (a GPU-sized config on a CPU): a line with the time
  // left, so that a run never looks hung. Not a metrics record: those keep train.log_every.
  const double per_step = state_.elapsed_s / std::max<int64_t>(state_.step, 1);
  const double remaining = static_cast<double>(config_.train.steps - state_.step) * per_step;
  char line[256];
  std::snprintf(line, sizeof(line), "step %lld/%lld  loss %.4f  %.1f s/step  eta %s",
                static_cast<long long>(state_.step), static_cast<long long>(config_.train.steps),
                loss, per_step, format_duration(remaining).c_str());
  log::progress(line);
}

void Trainer::log_train(double loss, double grad_norm) {
  const double interval = std::max(seconds_since(log_start_), 1e-9);
  const double tokens_per_s = static_cast<double>(log_tokens_) / interval;
  log_start_ = last_line_ = Clock::now();
  log_tokens_ = 0;
  if (!dist_.is_main()) return;
  io::JsonRecord record;
  record.add("kind", "train")
      .add("step", state_.step)
      .add("tokens", state_.tokens)
      .add("loss", loss)
      .add("grad_norm", grad_norm)
      .add("lr", optimizer_->muon_lr())
      .add("adamw_lr", optimizer_->adamw_lr())
      .add("tokens_per_s", tokens_per_s)
      .add("elapsed_s", state_.elapsed_s);
  // What train.param_dtype and the memory keys are chosen by (docs/design.md 2.2).
  if (const double peak = cuda_peak_gb(device_); peak >= 0) record.add("cuda_peak_gb", peak);
  metrics_->write(record);
  const double remaining = static_cast<double>(config_.train.steps - state_.step) *
                           state_.elapsed_s / std::max<int64_t>(state_.step, 1);
  char line[256];
  std::snprintf(line, sizeof(line), "step %lld/%lld  loss %.4f  |g| %.3f  %.3g tok/s  eta %s",
                static_cast<long long>(state_.step), static_cast<long long>(config_.train.steps),
                loss, grad_norm, tokens_per_s, format_duration(remaining).c_str());
  log::progress(line);
}

void Trainer::evaluate_and_log() {
  last_eval_step_ = state_.step;
  if (config_.train.eval_examples == 0) return;
  if (dist_.is_main()) {
    phase_ = "evaluation at step " + std::to_string(state_.step);
    const auto t0 = Clock::now();
    EvalOptions options{config_.train.eval_examples, config_.train.eval_batch_size,
                        config_.train.precision == Precision::kBf16};
    const auto metrics = evaluate(model_, *task_, config_.sleep, options);
    io::JsonRecord buckets;
    for (const auto& [name, m] : metrics.buckets()) buckets.add(name, metrics_record(m));
    buckets.add("all", metrics_record(metrics.overall()));
    metrics_->write(io::JsonRecord()
                        .add("kind", "eval")
                        .add("step", state_.step)
                        .add("tokens", state_.tokens)
                        .add("buckets", buckets)
                        .add("eval_s", seconds_since(t0))
                        .add("elapsed_s", state_.elapsed_s));
    log::progress_done();
    char line[160];
    std::snprintf(line, sizeof(line), "eval step %lld: exact %.4f  token acc %.4f  ce %.4f",
                  static_cast<long long>(state_.step), metrics.overall().exact_accuracy(),
                  metrics.overall().token_accuracy(), metrics.overall().mean_ce());
    log::info(line);
  }
  dist_.barrier();
}

void Trainer::save_checkpoint_now() {
  last_saved_step_ = state_.step;
  // A checkpoint holds the whole optimizer state, whoever owns it: it resumes at any world size.
  if (sharding_) sharding_->gather_state_to_main();
  if (dist_.is_main()) {
    phase_ = "saving the checkpoint of step " + std::to_string(state_.step);
    const auto path = save_checkpoint(request_.run_dir, state_, model_, *optimizer_, config_yaml_,
                                      config_.train.keep_checkpoints);
    event(io::JsonRecord()
              .add("event", "checkpoint")
              .add("step", state_.step)
              .add("path", path.string()));
  }
  if (sharding_) sharding_->drop_gathered_state();
  dist_.barrier();
}

void Trainer::event(io::JsonRecord record) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  record.add("time", std::chrono::duration<double>(now).count());
  events_->write(record);
}

std::string Trainer::config_summary() const {
  return task_->name().data() + std::string(", pattern ") + config_.model.pattern + ", d_model " +
         std::to_string(config_.model.d_model) + ", N " + std::to_string(config_.sleep.n_passes) +
         ", window " + std::to_string(config_.sleep.window) + ", batch " +
         std::to_string(config_.train.batch_size) + ", " + std::to_string(config_.train.steps) +
         " steps";
}

}  // namespace

bool is_resumable_key(const std::string& key) {
  static const char* const kKeys[] = {
      "train.steps",          "train.epochs",           "train.eval_every",
      "train.eval_at_start",  "train.eval_examples",    "train.eval_batch_size",
      "train.log_every",      "train.checkpoint_every", "train.keep_checkpoints",
      "run.out_dir",          "train.max_skips",        "train.cuda_graph",
      "train.shard_optimizer"};
  for (const char* k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

int train(const RunConfig& config, const TrainRequest& request) {
  Trainer trainer(config, request);
  return trainer.run();
}

}  // namespace hypnos::train
