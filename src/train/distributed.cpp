// c10d data parallelism: TCPStore rendezvous, Gloo (CPU) or NCCL (CUDA) backend, coalesced
// broadcast and bucketed gradient averaging; every wait is bounded and rethrown with its context.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include "hypnos/train/distributed.h"

#include <signal.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "hypnos/train/grad.h"

#ifdef HYPNOS_WITH_CUDA_TORCH
#include "train/distributed_nccl.h"
#endif

namespace hypnos::train {
namespace {

int64_t parse_int(const std::map<std::string, std::string>& vars, const std::string& name,
                  int64_t lo, int64_t hi) {
  const std::string& text = vars.at(name);
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < lo || value > hi) {
    throw std::invalid_argument("distributed environment: " + name + "='" + text +
                                "', expected an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  }
  return value;
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

// Buckets of tensors with one dtype and device, each at most `cap_bytes` (a larger tensor gets a
// bucket of its own), in the given order so every rank builds the same buckets.
std::vector<std::vector<at::Tensor>> make_buckets(const std::vector<at::Tensor>& tensors,
                                                  int64_t cap_bytes) {
  std::vector<std::vector<at::Tensor>> buckets;
  std::map<std::pair<int, std::string>, std::pair<size_t, int64_t>> open;  // key -> (index, bytes)
  for (const auto& t : tensors) {
    const auto key = std::make_pair(static_cast<int>(t.scalar_type()), t.device().str());
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    auto it = open.find(key);
    if (it == open.end() || it->second.second + bytes > cap_bytes) {
      buckets.emplace_back();
      it = open.insert_or_assign(key, std::make_pair(buckets.size() - 1, int64_t{0})).first;
    }
    buckets[it->second.first].push_back(t);
    it->second.second += bytes;
  }
  return buckets;
}

at::Tensor flatten(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.reshape({-1}));
  return at::cat(flat);
}

void unflatten_into(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) {
  int64_t offset = 0;
  for (const auto& t : tensors) {
    t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

std::string seconds(double s) {
  std::ostringstream out;
  out << std::setprecision(3) << s << " s";
  return out.str();
}

// The message without LibTorch's C++ backtrace, which says nothing about the peer.
std::string cause(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

// Gloo sends to its peers with plain socket writes: once a peer process has died, the next write
// raises SIGPIPE, whose default action kills this rank (exit status 141) before Gloo can report
// EPIPE and the collective's error can name what failed. Python ignores SIGPIPE from its start (so
// Python workers never meet this); a C++ program must do it itself. A handler the program
// installed is kept.
void ignore_sigpipe_unless_handled() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && !(current.sa_flags & SA_SIGINFO) &&
      current.sa_handler == SIG_DFL) {
    std::signal(SIGPIPE, SIG_IGN);
  }
}

}  // namespace

// ---- environment ------------------------------------------------------------------------------

DistributedEnvironment DistributedEnvironment::from_process() {
  std::map<std::string, std::string> vars;
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    if (const char* value = std::getenv(name)) vars[name] = value;
  }
  return from_variables(vars);
}

DistributedEnvironment DistributedEnvironment::from_variables(
    const std::map<std::string, std::string>& vars) {
  DistributedEnvironment env;
  const bool has_rank = vars.count("RANK") > 0, has_world = vars.count("WORLD_SIZE") > 0;
  if (!has_rank && !has_world) return env;
  if (!has_rank || !has_world) {
    throw std::invalid_argument(std::string("distributed environment: ") +
                                (has_rank ? "RANK" : "WORLD_SIZE") + " is set but " +
                                (has_rank ? "WORLD_SIZE" : "RANK") +
                                " is not; expected both (torchrun sets both)");
  }
  constexpr int64_t kMaxWorld = std::numeric_limits<int>::max();
  env.launched = true;
  env.world_size = parse_int(vars, "WORLD_SIZE", 1, kMaxWorld);
  env.rank = parse_int(vars, "RANK", 0, env.world_size - 1);
  env.local_rank =
      vars.count("LOCAL_RANK") ? parse_int(vars, "LOCAL_RANK", 0, kMaxWorld) : env.rank;
  if (env.world_size > 1) {
    for (const char* name : {"MASTER_ADDR", "MASTER_PORT"}) {
      if (!vars.count(name)) {
        throw std::invalid_argument(std::string("distributed environment: WORLD_SIZE=") +
                                    std::to_string(env.world_size) + " but " + name +
                                    " is not set");
      }
    }
  }
  if (vars.count("MASTER_ADDR")) {
    env.master_addr = vars.at("MASTER_ADDR");
    if (env.master_addr.empty()) {
      throw std::invalid_argument("distributed environment: MASTER_ADDR is empty");
    }
  }
  if (vars.count("MASTER_PORT")) env.master_port = parse_int(vars, "MASTER_PORT", 1, 65535);
  return env;
}

// ---- the group --------------------------------------------------------------------------------

struct DistributedContext::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  std::string where;  // "rank 1 of 2"

  // Waits for `work`; any failure (a peer that exited, hung past the timeout or dropped its
  // connection) becomes one error that says which collective, where, how long, and the timeout.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) const {
    const auto start = std::chrono::steady_clock::now();
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double limit = static_cast<double>(timeout.count()) / 1000.0;
      const bool timed_out = waited >= 0.95 * limit;
      throw std::runtime_error("distributed: " + what + " failed on " + where + " after " +
                               seconds(waited) + " (timeout " + seconds(limit) + "): " +
                               (timed_out
                                    ? "no peer answered within the timeout (a peer hung or died)"
                                    : "a peer exited or dropped its connection") +
                               ". Cause: " + cause(e));
    }
  }
};
DistributedContext::DistributedContext() = default;
DistributedContext::DistributedContext(DistributedContext&&) noexcept = default;
DistributedContext& DistributedContext::operator=(DistributedContext&&) noexcept = default;
DistributedContext::~DistributedContext() = default;

DistributedContext::DistributedContext(const DistributedEnvironment& env,
                                       const DistributedOptions& options, at::Device device)
    : env_(env), options_(options), device_(device) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    throw std::invalid_argument("DistributedContext: rank " + std::to_string(env.rank) +
                                " is outside the world of size " + std::to_string(env.world_size));
  }
  if (!(options.timeout_s > 0.0)) {
    throw std::invalid_argument("DistributedContext: distributed.timeout_s must be > 0, got " +
                                c10::str(options.timeout_s));
  }
  if (!(options.bucket_mb > 0.0)) {
    throw std::invalid_argument("DistributedContext: distributed.bucket_mb must be > 0, got " +
                                c10::str(options.bucket_mb));
  }
  if (!device.is_cpu() && !device.is_cuda()) {
    throw std::invalid_argument("DistributedContext: device must be cpu or cuda, got " +
                                device.str());
  }
#ifndef HYPNOS_WITH_CUDA_TORCH
  if (device.is_cuda()) {
    throw std::invalid_argument(
        "DistributedContext: device cuda needs NCCL, and this build has no CUDA "
        "(LibTorch was built without CUDA: HYPNOS_WITH_CUDA_TORCH is not defined)");
  }
#endif
  if (env.world_size == 1 && !env.launched) return;

  ignore_sigpipe_unless_handled();
  auto group = std::make_unique<Group>();
  group->timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000.0));
  group->where = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);
  const int rank = static_cast<int>(env.rank), size = static_cast<int>(env.world_size);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(env.master_port);
    store_options.isServer = env.rank == 0;
    store_options.numWorkers = static_cast<size_t>(env.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = group->timeout;
    group->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
    if (device.is_cuda()) {
#ifdef HYPNOS_WITH_CUDA_TORCH
      group->backend = detail::make_nccl_backend(group->store, rank, size, group->timeout,
                                                 static_cast<int>(env.local_rank));
#endif
    } else {
      auto gloo = c10d::ProcessGroupGloo::Options::create(group->timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
        gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(env.master_addr)) {
        // One machine: bind the loopback, whatever this host's name resolves to.
        gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      group->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, rank, size, gloo);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("distributed: " + group->where + " could not join the group at " +
                             env.master_addr + ":" + std::to_string(env.master_port) +
                             " within the timeout (" + seconds(options.timeout_s) +
                             "). Cause: " + cause(e));
  }
  group_ = std::move(group);
}

DistributedContext DistributedContext::from_environment(const DistributedOptions& options,
                                                        at::Device device) {
  return DistributedContext(DistributedEnvironment::from_process(), options, device);
}

// ---- collectives ------------------------------------------------------------------------------

void DistributedContext::broadcast_from_main(const std::vector<at::Tensor>& tensors) const {
  broadcast_from(0, tensors);
}

void DistributedContext::broadcast_from(int64_t root,
                                        const std::vector<at::Tensor>& tensors) const {
  if (!group_) return;
  if (root < 0 || root >= env_.world_size) {
    throw std::invalid_argument("DistributedContext::broadcast_from: rank " + std::to_string(root) +
                                " is outside the world of size " + std::to_string(env_.world_size));
  }
  at::NoGradGuard no_grad;
  const auto buckets =
      make_buckets(tensors, static_cast<int64_t>(options_.bucket_mb * 1024 * 1024));
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  opts.timeout = group_->timeout;
  for (const auto& bucket : buckets) {
    flats.push_back(flatten(bucket));
    std::vector<at::Tensor> io{flats.back()};
    works.push_back(group_->backend->broadcast(io, opts));
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    group_->wait(works[i], "broadcast from rank " + std::to_string(root) + " of bucket " +
                               std::to_string(i) + " of " + std::to_string(buckets.size()));
    if (rank() != root) unflatten_into(flats[i], buckets[i]);
  }
}

void DistributedContext::average_gradients(const std::vector<at::Tensor>& params) const {
  if (!group_) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params) {
    if (!p.requires_grad()) continue;
    if (!p.grad().defined()) p.mutable_grad() = zero_gradient_for(p);
    grads.push_back(p.grad());
  }
  const auto buckets = make_buckets(grads, static_cast<int64_t>(options_.bucket_mb * 1024 * 1024));
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  opts.timeout = group_->timeout;
  for (const auto& bucket : buckets) {  // all buckets in flight before the first wait
    flats.push_back(flatten(bucket));
    std::vector<at::Tensor> io{flats.back()};
    works.push_back(group_->backend->allreduce(io, opts));
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    group_->wait(works[i], "allreduce of gradient bucket " + std::to_string(i) + " of " +
                               std::to_string(buckets.size()));
    flats[i].div_(static_cast<double>(env_.world_size));
    unflatten_into(flats[i], buckets[i]);
  }
}

double DistributedContext::average(double value) const {
  if (!group_) return value;
  std::vector<at::Tensor> io{
      at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(device_))};
  c10d::AllreduceOptions opts;
  opts.timeout = group_->timeout;
  group_->wait(group_->backend->allreduce(io, opts), "allreduce of a scalar");
  return io[0].item<double>() / static_cast<double>(env_.world_size);
}

void DistributedContext::barrier() const {
  if (!group_) return;
  c10d::BarrierOptions opts;
  opts.timeout = group_->timeout;
  group_->wait(group_->backend->barrier(opts), "barrier");
}

}  // namespace hypnos::train
