// Saving and loading checkpoints: staged directory + manifest written last, verified before
// loading; a verified checkpoint that does not fit is an error, a corrupt one is skipped and can be
// set aside.
#include "hypnos/train/checkpoint.h"

#include <nlohmann/json.hpp>

#include <cstdio>

#include "hypnos/io/durable.h"
#include "hypnos/io/manifest.h"
#include "hypnos/io/safetensors.h"
#include "train/fault_injection.h"

namespace hypnos::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kPrefix = "step_";

std::optional<int64_t> step_of(const fs::path& dir) {
  const std::string name = dir.filename().string();
  if (name.rfind(kPrefix, 0) != 0 || name.size() != 5 + 8) return std::nullopt;
  int64_t step = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return std::nullopt;
    step = step * 10 + (c - '0');
  }
  return step;
}

// The live parameters and buffers, which loading copies into.
io::NamedTensors model_targets(nn::HybridLM& model) {
  io::NamedTensors out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : model->named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

io::NamedTensors model_tensors(nn::HybridLM& model) {
  io::NamedTensors out;
  for (const auto& p : model->named_parameters())
    out.emplace_back(p.key(), p.value().detach().cpu());
  for (const auto& b : model->named_buffers()) out.emplace_back(b.key(), b.value().detach().cpu());
  return out;
}

// Everything is read and checked before anything is applied: a checkpoint refused half-way must
// leave the model and the optimizer as they were.
TrainingState load_into(const fs::path& dir, nn::HybridLM& model, Optimizer* optimizer,
                        std::vector<std::string>* nonfinite) {
  const fs::path weights = dir / "model.safetensors";
  const auto contents = io::load_safetensors(weights);
  const io::NamedTensors targets = model_targets(model);
  io::check_tensors_match(contents, targets, weights.string());
  if (nonfinite) *nonfinite = io::nonfinite_tensors(contents.tensors);
  const auto saved = contents.as_map();
  const auto j = nlohmann::json::parse(io::read_file(dir / "trainer_state.json"));
  TrainingState state;
  state.step = j.at("step").get<int64_t>();
  state.tokens = j.at("tokens").get<int64_t>();
  state.consecutive_skips = j.at("consecutive_skips").get<int64_t>();
  state.elapsed_s = j.at("elapsed_s").get<double>();
  std::optional<Optimizer> staged;  // loaded beside the live one, swapped in at the end
  if (optimizer) {
    staged.emplace(split_parameters(*model), optimizer->options());
    torch::serialize::InputArchive archive;
    archive.load_from((dir / "optimizer.pt").string());
    staged->load(archive);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.copy_(saved.at(name));
  if (optimizer) *optimizer = std::move(*staged);
  return state;
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

fs::path save_checkpoint(const fs::path& run_dir, const TrainingState& state, nn::HybridLM& model,
                         const Optimizer& optimizer, const std::string& config_yaml, int64_t keep) {
  const fs::path root = run_dir / "checkpoints";
  fs::create_directories(root);
  io::remove_stale_temporaries(root);  // a save killed mid-way left one (R6)
  io::StagedDirectory staged(root / checkpoint_name(state.step));
  io::save_safetensors(staged.path() / "model.safetensors", model_tensors(model),
                       {{"format", "pt"}, {"step", std::to_string(state.step)}});
  {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    io::write_file_atomic(staged.path() / "optimizer.pt", bytes.str());
  }
  nlohmann::json j = {{"step", state.step},
                      {"tokens", state.tokens},
                      {"consecutive_skips", state.consecutive_skips},
                      {"elapsed_s", state.elapsed_s}};
  io::write_file_atomic(staged.path() / "trainer_state.json", j.dump(2) + "\n");
  io::write_file_atomic(staged.path() / "config.yaml", config_yaml);
  io::write_manifest(staged.path());  // last: a checkpoint without it is never loaded
  fault::point("save.before_commit");
  staged.commit();
  const auto all = list_checkpoints(run_dir);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 1)); i < all.size(); ++i) {
    io::remove_tree(all[i]);
  }
  return staged.final_path();
}

std::vector<fs::path> list_checkpoints(const fs::path& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    if (auto step = step_of(entry.path())) found.emplace_back(*step, entry.path());
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::optional<fs::path> find_latest_valid_checkpoint(
    const fs::path& run_dir,
    const std::function<void(const fs::path&, const std::string&)>& on_problem,
    std::optional<int64_t> only_step) {
  for (const auto& dir : list_checkpoints(run_dir)) {
    if (only_step && step_of(dir) != only_step) continue;
    if (auto problem = io::find_manifest_problem(dir)) {
      on_problem(dir, *problem);
      continue;
    }
    return dir;
  }
  return std::nullopt;
}

TrainingState load_checkpoint(const fs::path& dir, nn::HybridLM& model, Optimizer* optimizer,
                              std::vector<std::string>* nonfinite) {
  try {
    return load_into(dir, model, optimizer, nonfinite);
  } catch (const std::exception& e) {  // verified bytes that do not fit this model or optimizer
    std::string what = e.what();
    if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
      what = error->what_without_backtrace();
    }
    throw CheckpointMismatch("checkpoint " + dir.string() +
                             " does not fit: " + what.substr(0, what.find('\n')));
  }
}

std::optional<TrainingState> load_latest_checkpoint(
    const fs::path& run_dir, nn::HybridLM& model, Optimizer* optimizer,
    const std::function<void(const fs::path&, const std::string&)>& on_problem,
    std::optional<int64_t> only_step) {
  const auto dir = find_latest_valid_checkpoint(run_dir, on_problem, only_step);
  if (!dir) return std::nullopt;
  return load_checkpoint(*dir, model, optimizer);
}

fs::path set_aside_checkpoint(const fs::path& dir) {
  const fs::path rejected = dir.parent_path() / "rejected";
  fs::create_directories(rejected);
  fs::path target = rejected / dir.filename();
  for (int i = 1; fs::exists(target); ++i) {
    target = rejected / (dir.filename().string() + "-" + std::to_string(i));
  }
  fs::rename(dir, target);
  io::fsync_directory(rejected);
  io::fsync_directory(dir.parent_path());
  return target;
}

}  // namespace hypnos::train
