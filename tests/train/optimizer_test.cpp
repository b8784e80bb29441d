// The Muon/AdamW split on a small named module, the combined optimizer against torch's AdamW and
// the standalone Muon, lr multipliers, and a save/load resume that continues bitwise.
#include "hypnos/train/optimizer.h"

#include <gtest/gtest.h>

#include <sstream>

#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/train/distributed.h"
#include "hypnos/train/muon.h"
#include "hypnos/train/schedule.h"

namespace hypnos::train {
namespace {

// Names like the model's: embeddings, a hidden projection with a bias, a depthwise conv, a norm
// scale, an MLP pair, an output head and a frozen matrix.
struct TinyLMImpl : torch::nn::Module {
  TinyLMImpl() {
    embed = register_module("embed", torch::nn::Embedding(10, 8));
    mixer = register_module("mixer", torch::nn::Linear(8, 8));
    conv = register_module(
        "conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(8, 8, 3).groups(8).padding(1)));
    norm = register_parameter("norm", torch::ones({8}));
    up = register_module("mlp_up", torch::nn::Linear(torch::nn::LinearOptions(8, 16).bias(false)));
    down =
        register_module("mlp_down", torch::nn::Linear(torch::nn::LinearOptions(16, 8).bias(false)));
    head = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(8, 10).bias(false)));
    frozen = register_parameter("frozen", torch::zeros({4, 4}), /*requires_grad=*/false);
    short_conv = register_parameter("short_conv", torch::zeros({8, 3}));  // [C, K] taps
  }
  // tokens: [B, T] -> loss
  at::Tensor loss(const at::Tensor& tokens, const at::Tensor& targets) {
    at::Tensor x = embed(tokens) * norm;              // [B, T, 8]
    x = x + conv(x.transpose(1, 2)).transpose(1, 2);  // [B, T, 8]
    x = x + torch::tanh(mixer(x));
    x = x + down(torch::relu(up(x)));
    return torch::cross_entropy_loss(head(x).flatten(0, 1), targets.flatten());
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear mixer{nullptr}, up{nullptr}, down{nullptr}, head{nullptr};
  torch::nn::Conv1d conv{nullptr};
  at::Tensor norm, frozen, short_conv;
};
TORCH_MODULE(TinyLM);

void copy_parameters(const TinyLM& from, TinyLM& to) {
  at::NoGradGuard no_grad;
  const auto src = from->named_parameters();
  for (auto& item : to->named_parameters()) item.value().copy_(src[item.key()]);
}

std::vector<std::string> names(const NamedParameters& named) {
  std::vector<std::string> out;
  for (const auto& [name, p] : named) out.push_back(name);
  return out;
}

// A fixed batch per step: the same data for every run that asks for step `step`.
std::pair<at::Tensor, at::Tensor> batch(int64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + step);
  return {at::randint(10, {4, 6}, gen, at::kLong), at::randint(10, {4, 6}, gen, at::kLong)};
}

void train_steps(TinyLM& model, Optimizer& optimizer, const Schedule& schedule, int64_t begin,
                 int64_t end) {
  for (int64_t step = begin; step < end; ++step) {
    const auto [tokens, targets] = batch(step);
    optimizer.zero_grad();
    model->loss(tokens, targets).backward();
    optimizer.clip_gradients();
    optimizer.set_lr_multiplier(schedule.multiplier(step));
    optimizer.step();
  }
}

// Largest |a - b| / (|b| + 1e-3) over every parameter.
double max_difference(const TinyLM& a, const TinyLM& b) {
  const auto pb = b->named_parameters();
  double worst = 0;
  for (const auto& item : a->named_parameters()) {
    const auto& other = pb[item.key()];
    worst =
        std::max(worst, ((item.value() - other).abs() / (other.abs() + 1e-3)).max().item<double>());
  }
  return worst;
}

bool all_equal(const TinyLM& a, const TinyLM& b) {
  const auto pb = b->named_parameters();
  for (const auto& item : a->named_parameters()) {
    if (!at::equal(item.value(), pb[item.key()])) return false;
  }
  return true;
}

TEST(ParameterSplit, HiddenMatricesToMuonEverythingElseToAdamW) {
  TinyLM model;
  const ParameterSplit split = split_parameters(*model);
  EXPECT_EQ(names(split.muon),
            (std::vector<std::string>{"mixer.weight", "mlp_up.weight", "mlp_down.weight"}));
  EXPECT_EQ(names(split.adamw),
            (std::vector<std::string>{"norm", "short_conv", "embed.weight", "mixer.bias",
                                      "conv.weight", "conv.bias", "head.weight"}));
}

TEST(ParameterSplit, JetBlockGeneratorGoesToMuonUnderEitherNaming) {
  for (auto layout : {nn::ParameterNames::kHypnos, nn::ParameterNames::kHf}) {
    nn::ModelOptions o;
    o.vocab_size = 10;
    o.d_model = 16;
    o.n_heads = 2;
    o.pattern = "J";
    o.names = layout;
    nn::HybridLM m(o);
    const ParameterSplit split = split_parameters(*m);
    const auto muon = names(split.muon), adamw = names(split.adamw);
    EXPECT_EQ(muon.size(), 11u);  // q k v g a b o, generator 2, mlp up/down
    for (const auto& n : muon) EXPECT_EQ(n.find("emb"), std::string::npos) << n;
    for (const auto& n : adamw) {
      EXPECT_TRUE(n.find("emb") != std::string::npos || n.find("head") != std::string::npos ||
                  n.find("norm") != std::string::npos || n.find("A_log") != std::string::npos ||
                  n.find("dt_bias") != std::string::npos || n.find("bias") != std::string::npos)
          << n;
    }
  }
}

// AdamW runs through ATen's fused kernel: the same update as torch::optim::AdamW up to the order of
// float32 operations.
TEST(Optimizer, GroupsMatchTorchAdamWAndStandaloneMuon) {
  TinyLM model, twin, initial;
  copy_parameters(model, twin);
  copy_parameters(model, initial);
  OptimizerOptions options;
  options.weight_decay = 0.01;
  options.adamw_lr = 3e-3;
  Optimizer optimizer(split_parameters(*model), options);

  const ParameterSplit twin_split = split_parameters(*twin);
  std::vector<at::Tensor> twin_muon, twin_adamw;
  for (const auto& [name, p] : twin_split.muon) twin_muon.push_back(p);
  for (const auto& [name, p] : twin_split.adamw) twin_adamw.push_back(p);
  torch::optim::AdamW adamw(
      twin_adamw,
      torch::optim::AdamWOptions(3e-3).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.01));
  Muon muon(twin_muon, MuonOptions(2e-3).momentum(0.95).weight_decay(0.01));

  const std::vector<double> multipliers = {0.5, 1.0, 0.25};
  for (size_t step = 0; step < multipliers.size(); ++step) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(40 + step);
    auto twin_params = twin->named_parameters();
    for (auto& item : model->named_parameters()) {
      if (!item.value().requires_grad()) continue;
      const at::Tensor g = at::randn(item.value().sizes(), gen);
      item.value().mutable_grad() = g.clone();
      twin_params[item.key()].mutable_grad() = g.clone();
    }
    optimizer.set_lr_multiplier(multipliers[step]);
    for (auto& group : adamw.param_groups()) group.options().set_lr(3e-3 * multipliers[step]);
    for (auto& group : muon.param_groups()) group.options().set_lr(2e-3 * multipliers[step]);
    optimizer.step();
    adamw.step();
    muon.step();
    EXPECT_LT(max_difference(model, twin), 1e-6) << "step " << step;
  }
  // The updates were not trivial: every trainable parameter moved.
  const auto start = initial->named_parameters();
  for (const auto& item : model->named_parameters()) {
    if (item.value().requires_grad()) EXPECT_FALSE(at::equal(item.value(), start[item.key()]));
  }
}

TEST(Optimizer, ZeroMultiplierLeavesEveryParameterUnchanged) {
  TinyLM model, before;
  copy_parameters(model, before);
  OptimizerOptions options;
  options.weight_decay = 0.1;
  Optimizer optimizer(split_parameters(*model), options);
  const auto [tokens, targets] = batch(0);
  model->loss(tokens, targets).backward();
  optimizer.set_lr_multiplier(0.0);
  EXPECT_EQ(optimizer.muon_lr(), 0.0);
  EXPECT_EQ(optimizer.adamw_lr(), 0.0);
  optimizer.step();
  EXPECT_TRUE(all_equal(model, before));
  optimizer.set_lr_multiplier(0.5);
  EXPECT_DOUBLE_EQ(optimizer.muon_lr(), 1e-3);
  EXPECT_DOUBLE_EQ(optimizer.adamw_lr(), 2.5e-5);
  optimizer.step();
  EXPECT_FALSE(all_equal(model, before));
  EXPECT_THROW(optimizer.set_lr_multiplier(-1.0), std::invalid_argument);
}

TEST(Optimizer, SaveLoadResumeContinuesBitwise) {
  OptimizerOptions options;
  options.adamw_lr = 1e-2;  // large enough that a lost AdamW moment would show
  options.weight_decay = 0.01;
  const Schedule schedule({ScheduleKind::kWarmupCosine, 2, 0.1}, 8);

  TinyLM run;
  Optimizer optimizer(split_parameters(*run), options);
  train_steps(run, optimizer, schedule, 0, 4);
  std::stringstream saved;
  {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to(saved);
  }
  TinyLM snapshot;
  copy_parameters(run, snapshot);
  train_steps(run, optimizer, schedule, 4, 8);

  TinyLM resumed;
  copy_parameters(snapshot, resumed);
  Optimizer resumed_optimizer(split_parameters(*resumed), options);
  {
    torch::serialize::InputArchive archive;
    archive.load_from(saved);
    resumed_optimizer.load(archive);
  }
  EXPECT_EQ(resumed_optimizer.lr_multiplier(), schedule.multiplier(3));
  train_steps(resumed, resumed_optimizer, schedule, 4, 8);
  EXPECT_TRUE(all_equal(run, resumed));

  // Without the optimizer state the continuation differs: the comparison above can fail.
  TinyLM cold;
  copy_parameters(snapshot, cold);
  Optimizer cold_optimizer(split_parameters(*cold), options);
  train_steps(cold, cold_optimizer, schedule, 4, 8);
  EXPECT_FALSE(all_equal(run, cold));
}

TEST(Optimizer, LoadRejectsAnArchiveOfAnotherSplit) {
  TinyLM model;
  Optimizer optimizer(split_parameters(*model), OptimizerOptions{});
  std::stringstream saved;
  {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to(saved);
  }
  ParameterSplit smaller = split_parameters(*model);
  smaller.muon.pop_back();
  Optimizer other(smaller, OptimizerOptions{});
  torch::serialize::InputArchive archive;
  archive.load_from(saved);
  try {
    other.load(archive);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("3 Muon"), std::string::npos) << e.what();
  }
}

TEST(Optimizer, RejectsNegativeLearningRatesNamingTheKey) {
  TinyLM model;
  OptimizerOptions options;
  options.adamw_lr = -1.0;
  try {
    Optimizer optimizer(split_parameters(*model), options);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(std::string(e.what()).ends_with("optimizer.adamw_lr must be >= 0, got -1"))
        << e.what();
  }
}

TEST(Optimizer, ClipGradientsUsesTheConfiguredNormOverBothGroups) {
  TinyLM model;
  OptimizerOptions options;
  options.grad_clip = 1e-3;
  Optimizer optimizer(split_parameters(*model), options);
  const auto [tokens, targets] = batch(1);
  model->loss(tokens, targets).backward();
  const double before = optimizer.clip_gradients();
  EXPECT_GT(before, 1e-3);
  double after_sq = 0.0;
  for (const auto& p : optimizer.parameters()) {
    if (p.grad().defined()) after_sq += p.grad().pow(2).sum().item<double>();
  }
  EXPECT_NEAR(std::sqrt(after_sq), 1e-3, 1e-8);
  EXPECT_EQ(optimizer.parameters().size(), 10u);
}

// Records what an options struct's visit declares: key, and whether the default is in its range.
struct FieldRecorder {
  std::vector<std::string> keys;
  std::vector<std::string> out_of_range;
  template <class T>
  void field(std::string_view key, T& value, std::string_view doc, config::Range range = {}) {
    keys.emplace_back(key);
    EXPECT_FALSE(doc.empty()) << key;
    if constexpr (std::is_arithmetic_v<T>) {
      const double v = static_cast<double>(value);
      if (v < range.min || v > range.max) out_of_range.emplace_back(key);
    }
  }
};

TEST(OptionsVisit, OptimizerScheduleAndDistributedKeysWithDefaultsInRange) {
  FieldRecorder optimizer, schedule, distributed;
  OptimizerOptions o;
  o.visit(optimizer);
  ScheduleOptions s;
  s.visit(schedule);
  DistributedOptions d;
  d.visit(distributed);
  EXPECT_EQ(optimizer.keys,
            (std::vector<std::string>{"muon_lr", "adamw_lr", "beta1", "beta2", "eps",
                                      "weight_decay", "momentum", "ns_steps", "grad_clip"}));
  EXPECT_EQ(schedule.keys, (std::vector<std::string>{"kind", "warmup_steps", "min_lr_ratio"}));
  EXPECT_EQ(distributed.keys, (std::vector<std::string>{"timeout_s", "bucket_mb"}));
  EXPECT_TRUE(optimizer.out_of_range.empty());
  EXPECT_TRUE(schedule.out_of_range.empty());
  EXPECT_TRUE(distributed.out_of_range.empty());
  // The paper's recipe and the reference's Muon.
  EXPECT_EQ(o.muon_lr, 2e-3);
  EXPECT_EQ(o.adamw_lr, 5e-5);
  EXPECT_EQ(o.momentum, 0.95);
  EXPECT_EQ(o.ns_steps, 5);
  EXPECT_EQ(o.grad_clip, 1.0);
}

}  // namespace
}  // namespace hypnos::train
