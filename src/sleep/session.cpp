// Session: feed / predict / save / load around sleep_window (the window loop's single-window step).
#include "hypnos/sleep/session.h"

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "hypnos/config/visitors.h"
#include "hypnos/io/safetensors.h"
#include "hypnos/memory/model_memory.h"
#include "hypnos/nn/weights.h"
#include "hypnos/sleep/window_loop.h"

namespace hypnos::sleep {
namespace {

/// "key: value" lines of a YAML text written by config::to_yaml (flat: one section).
std::map<std::string, std::string> yaml_lines(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(": ");
    if (colon != std::string::npos) out[line.substr(0, colon)] = line.substr(colon + 2);
  }
  return out;
}

/// Every key whose value differs, as "<prefix>.key is 'file' in the file, 'ours' in the loading
/// Session".
std::vector<std::string> differences(const std::string& prefix, const std::string& file_text,
                                     const std::string& our_text) {
  const auto theirs = yaml_lines(file_text), ours = yaml_lines(our_text);
  std::vector<std::string> out;
  auto value = [](const std::map<std::string, std::string>& m, const std::string& key) {
    const auto it = m.find(key);
    return it == m.end() ? std::string("<absent>") : it->second;
  };
  std::map<std::string, bool> keys;
  for (const auto& [k, v] : theirs) keys[k] = true;
  for (const auto& [k, v] : ours) keys[k] = true;
  for (const auto& [k, unused] : keys) {
    if (value(theirs, k) != value(ours, k)) {
      out.push_back(prefix + k + " is '" + value(theirs, k) + "' in the file, '" + value(ours, k) +
                    "' in the loading Session");
    }
  }
  return out;
}

}  // namespace

// What a memory file records of the computation that consolidated it: every sleep option and the
// model's fingerprint (architecture and a hash of its weights). A memory is only meaningful to the
// model and the sleep that wrote it, so load() refuses any other.
std::map<std::string, std::string> Session::metadata() const {
  return {{"format", "hypnos.memory"},
          {"sleep", config::to_yaml(options_)},
          {"model", nn::architecture_yaml(model_->options)},
          {"model_weights_sha256", nn::weights_sha256(model_)}};
}

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
  return model_->logits(r.hidden).narrow(1, window.size(1) - query.size(1), query.size(1));
}

void Session::save(const std::filesystem::path& path) const {
  io::NamedTensors tensors = memory_.named_tensors();
  if (pending_.defined()) tensors.emplace_back("pending", pending_);
  io::save_safetensors(path, tensors, metadata());
}

SleepOptions Session::recorded_options(const std::filesystem::path& path) {
  const io::SafetensorsContents file = io::load_safetensors(path);
  const auto format = file.metadata.find("format");
  const auto sleep = file.metadata.find("sleep");
  if (format == file.metadata.end() || format->second != "hypnos.memory" ||
      sleep == file.metadata.end()) {
    throw std::runtime_error(path.string() +
                             " is not a hypnos memory file (no format 'hypnos.memory' with its "
                             "sleep options in the metadata)");
  }
  try {
    config::Document doc = config::Document::from_string(sleep->second, path.string() + " (sleep)");
    SleepOptions options;
    config::Reader reader(doc);
    options.visit(reader);
    doc.check_all_used(reader.visited());
    return options;
  } catch (const std::exception& e) {
    throw std::runtime_error(path.string() +
                             ": its recorded sleep options do not parse: " + e.what());
  }
}

void Session::load(const std::filesystem::path& path) {
  const io::SafetensorsContents file = io::load_safetensors(path);
  auto recorded = [&](const std::string& key) {
    const auto it = file.metadata.find(key);
    return it == file.metadata.end() ? std::string("<absent>") : it->second;
  };
  const auto ours = metadata();
  std::vector<std::string> problems;
  if (recorded("format") != ours.at("format")) {
    problems.push_back("format is '" + recorded("format") + "', expected '" + ours.at("format") +
                       "'");
  } else {
    problems = differences("sleep.", recorded("sleep"), ours.at("sleep"));
    for (auto& d : differences("model.", recorded("model"), ours.at("model"))) {
      problems.push_back(std::move(d));
    }
    if (recorded("model_weights_sha256") != ours.at("model_weights_sha256")) {
      problems.push_back("the model's weights differ (sha256 " + recorded("model_weights_sha256") +
                         " in the file, " + ours.at("model_weights_sha256") +
                         " in the loading Session)");
    }
  }
  if (!problems.empty()) {
    std::string message = "Session::load(" + path.string() +
                          "): the memory was consolidated by another model or sleep: ";
    for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw std::runtime_error(message);
  }
  io::NamedTensors layers;
  at::Tensor pending;
  const auto device = model_->head_weight().device();
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
