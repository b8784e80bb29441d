// Session: feed / predict / save / load around sleep_window (the window loop's single-window step).
#include "hypnos/sleep/session.h"

#include "hypnos/io/safetensors.h"
#include "hypnos/memory/model_memory.h"
#include "hypnos/sleep/window_loop.h"

namespace hypnos::sleep {
namespace {

std::map<std::string, std::string> options_metadata(const SleepOptions& o) {
  return {{"format", "hypnos.memory"},
          {"window", std::to_string(o.window)},
          {"n_passes", std::to_string(o.n_passes)},
          {"eviction", std::string(config::EnumNames<memory::Eviction>::names[static_cast<size_t>(
                           o.eviction)])}};
}

}  // namespace

Session::Session(nn::HybridLM model, SleepOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  options_.validate(model_->n_layers());
  memory_ = memory::ModelMemory::empty(model_->n_layers());
}

void Session::feed(const at::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "Session::feed: tokens must be [B, T], got ", tokens.sizes());
  torch::NoGradGuard no_grad;
  at::Tensor buffer = pending_.defined() ? at::cat({pending_, tokens}, 1) : tokens;
  const int64_t L = options_.window;
  WindowPlan plan;
  plan.sleeps = options_.n_passes > 1;  // a full window is always evicted: it sleeps
  plan.wants_logits = false;
  while (buffer.size(1) >= L) {
    memory_ = sleep_window(model_, buffer.narrow(1, 0, L), memory_, plan, options_).memory;
    buffer = buffer.narrow(1, L, buffer.size(1) - L);
  }
  pending_ = buffer.contiguous();
}

at::Tensor Session::predict(const at::Tensor& query) {
  TORCH_CHECK(query.dim() == 2, "Session::predict: query must be [B, Q], got ", query.sizes());
  const at::Tensor window = pending_.defined() ? at::cat({pending_, query}, 1) : query;
  TORCH_CHECK(window.size(1) <= options_.window, "Session::predict: pending (",
              window.size(1) - query.size(1), ") + query (", query.size(1),
              ") tokens exceed the window (", options_.window, ")");
  torch::NoGradGuard no_grad;
  const WindowResult r = sleep_window(model_, window, memory_, WindowPlan{}, options_);
  return r.logits.narrow(1, window.size(1) - query.size(1), query.size(1));
}

void Session::save(const std::filesystem::path& path) const {
  io::NamedTensors tensors = memory_.named_tensors();
  if (pending_.defined()) tensors.emplace_back("pending", pending_);
  io::save_safetensors(path, tensors, options_metadata(options_));
}

void Session::load(const std::filesystem::path& path) {
  const io::SafetensorsContents file = io::load_safetensors(path);
  for (const auto& [key, value] : options_metadata(options_)) {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end() || it->second != value) {
      throw std::runtime_error("Session::load(" + path.string() + "): " + key + " is '" +
                               (it == file.metadata.end() ? std::string("<absent>") : it->second) +
                               "', this session has '" + value + "'");
    }
  }
  io::NamedTensors layers;
  at::Tensor pending;
  const auto device = model_->lm_head->weight.device();
  for (const auto& [name, t] : file.tensors) {
    if (name == "pending") {
      pending = t.to(device);
    } else {
      layers.emplace_back(name, t.to(device));
    }
  }
  memory_ = memory::ModelMemory::from_named(model_->n_layers(), layers);
  pending_ = pending;
}

}  // namespace hypnos::sleep
