// Saving and loading checkpoints: staged directory + manifest written last, verified before loading.
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

io::NamedTensors model_tensors(nn::HybridLM& model) {
  io::NamedTensors out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value().detach().cpu());
  for (const auto& b : model->named_buffers()) out.emplace_back(b.key(), b.value().detach().cpu());
  return out;
}

// Everything is read and checked before anything is applied: a checkpoint rejected half-way must
// leave the model and the optimizer as they were (the caller then tries an older one, or step 0).
TrainingState load_into(const fs::path& dir, nn::HybridLM& model, Optimizer* optimizer) {
  const auto contents = io::load_safetensors(dir / "model.safetensors");
  const auto saved = contents.as_map();
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (target, saved)
  auto check = [&](const std::string& name, const at::Tensor& target) {
    auto it = saved.find(name);
    if (it == saved.end()) throw std::runtime_error("model.safetensors has no tensor '" + name + "'");
    if (it->second.sizes() != target.sizes()) {
      throw std::runtime_error("model.safetensors: '" + name + "' has shape " +
                               c10::str(it->second.sizes()) + ", the model expects " +
                               c10::str(target.sizes()));
    }
    copies.emplace_back(target, it->second);
  };
  for (const auto& p : model->named_parameters()) check(p.key(), p.value());
  for (const auto& b : model->named_buffers()) check(b.key(), b.value());
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
  for (auto& [target, value] : copies) target.copy_(value);
  if (optimizer) *optimizer = std::move(*staged);
  return state;
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

fs::path save_checkpoint(const fs::path& run_dir, const TrainingState& state,
                         nn::HybridLM& model, const Optimizer& optimizer,
                         const std::string& config_yaml, int64_t keep) {
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
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::optional<TrainingState> load_latest_checkpoint(
    const fs::path& run_dir, nn::HybridLM& model, Optimizer* optimizer,
    const std::function<void(const fs::path&, const std::string&)>& on_problem,
    std::optional<int64_t> only_step) {
  for (const auto& dir : list_checkpoints(run_dir)) {
    if (only_step && step_of(dir) != only_step) continue;
    if (auto problem = io::find_manifest_problem(dir)) {
      on_problem(dir, *problem);
      continue;
    }
    try {
      return load_into(dir, model, optimizer);
    } catch (const std::exception& e) {  // verified bytes that still do not fit this model/config
      on_problem(dir, e.what());
    }
  }
  return std::nullopt;
}

}  // namespace hypnos::train
