// Data parallelism on c10d: a torchrun-style environment, parameters broadcast from rank 0 and
// gradients averaged by bucketed allreduce (Gloo on CPU, NCCL on CUDA). c10d stays out of this
// header (pimpl), and every collective fails with a named error after the timeout, never hangs.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hypnos/config/fields.h"

namespace hypnos::train {

struct DistributedOptions {
  /// Seconds the rendezvous and each collective may wait for a peer before failing with an
  /// error that names the collective and the rank. Default: 300.
  double timeout_s = 300.0;
  /// Size of one gradient allreduce bucket in MiB (DDP's default). Default: 25.
  double bucket_mb = 25.0;

  template <class V>
  void visit(V& v) {
    v.field("timeout_s", timeout_s, "seconds a collective may wait for a peer",
            config::Range{0.1, 86400});
    v.field("bucket_mb", bucket_mb, "gradient allreduce bucket size in MiB",
            config::Range{0.001, 4096});
  }
};

/// Where this process sits, as torchrun describes it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
/// MASTER_PORT). With neither RANK nor WORLD_SIZE set it is a single process.
struct DistributedEnvironment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;  ///< the GPU index on this node
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  /// RANK and WORLD_SIZE were set (a launched run, e.g. by scripts/launch.sh or torchrun): such a
  /// run joins a group even at world size 1, so a one-rank launch goes through the same collectives
  /// (and the same NCCL or Gloo set-up) as a many-rank one.
  bool launched = false;

  /// From the variables of this process.
  static DistributedEnvironment from_process();
  /// From a name -> value map (absent names are unset). Throws std::invalid_argument naming the
  /// variable and its value when one is malformed, out of range, or RANK and WORLD_SIZE are not
  /// both set; MASTER_ADDR and MASTER_PORT are required when WORLD_SIZE > 1.
  static DistributedEnvironment from_variables(const std::map<std::string, std::string>& vars);
};

/// One process of a data-parallel group. The single-process context does no communication, so a
/// trainer calls the same methods with or without torchrun.
class DistributedContext {
 public:
  /// Single process: rank 0 of 1.
  DistributedContext();
  /// Joins the group: rank 0 hosts the c10d TCPStore at master_addr:master_port, every rank
  /// connects (waiting up to timeout_s for all of them). CPU device: ProcessGroupGloo; CUDA device:
  /// ProcessGroupNCCL on device local_rank (only in builds with HYPNOS_WITH_CUDA_TORCH, a CUDA
  /// LibTorch; otherwise std::invalid_argument). A world of one creates no group unless it was
  /// launched. Joining sets SIGPIPE to ignored unless the program handles it: a write to a dead
  /// peer must fail as an error the collective reports, not kill the rank.
  DistributedContext(const DistributedEnvironment& env, const DistributedOptions& options,
                     at::Device device);
  /// DistributedContext(DistributedEnvironment::from_process(), options, device).
  static DistributedContext from_environment(const DistributedOptions& options, at::Device device);

  DistributedContext(DistributedContext&&) noexcept;
  DistributedContext& operator=(DistributedContext&&) noexcept;
  ~DistributedContext();

  int64_t rank() const { return env_.rank; }
  int64_t world_size() const { return env_.world_size; }
  int64_t local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  bool is_distributed() const { return env_.world_size > 1; }
  /// Whether this process joined a c10d group (world size > 1, or a launched world of one).
  bool joined_group() const { return group_ != nullptr; }

  /// Overwrites `tensors` in place with rank 0's values, bitwise (parameters and buffers before
  /// step 1 and after a resume). Coalesced into buckets per dtype; autograd is off inside.
  void broadcast_from_main(const std::vector<at::Tensor>& tensors) const;
  /// The same from rank `root` (optimizer-state sharding: each parameter from its owner).
  void broadcast_from(int64_t root, const std::vector<at::Tensor>& tensors) const;

  /// Replaces the gradient of every parameter that requires grad by its mean over the ranks:
  /// flattened into buckets of about bucket_mb per dtype, summed by allreduce, divided by
  /// world_size, unflattened. A parameter without a gradient on this rank contributes zeros (it
  /// gets a zero gradient), so ranks that used different parameters still agree on the call.
  /// The result is bitwise identical on every rank.
  void average_gradients(const std::vector<at::Tensor>& params) const;

  /// Mean of a scalar over the ranks (a metric such as the loss), in float64.
  double average(double value) const;

  /// Waits for every rank (timeout_s like any collective).
  void barrier() const;

 private:
  struct Group;  // the c10d store and backend
  DistributedEnvironment env_;
  DistributedOptions options_;
  at::Device device_ = at::kCPU;
  std::unique_ptr<Group> group_;
};

}  // namespace hypnos::train
