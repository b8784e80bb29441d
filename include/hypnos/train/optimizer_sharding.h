// Optimizer-state sharding (ZeRO-1, docs/design.md 2.1) on top of data parallelism: gradients are
// averaged on every rank as before, each rank updates and keeps the Muon / AdamW state (and the
// fp32 masters of bf16 parameters) of the parameters it owns, then every parameter is broadcast
// from its owner (in its own dtype: bf16 parameters travel as bf16). Muon orthogonalises whole
// matrices, so a parameter is never split: ranks own whole parameters, balanced by size.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace hypnos::train {

class Optimizer;
class DistributedContext;

/// The owner rank of each tensor: largest first (ties in index order), each to the rank with the
/// fewest elements so far (the lowest such rank): deterministic in the shapes and world_size.
std::vector<int64_t> assign_owners(const std::vector<at::Tensor>& tensors, int64_t world_size);

class OptimizerSharding {
 public:
  /// Makes `optimizer` update and keep state for this rank's parameters only, and drops the state
  /// of the others (all of it was loaded from a checkpoint). Both must outlive this object; a
  /// checkpoint loaded into `optimizer` later needs a new OptimizerSharding.
  OptimizerSharding(Optimizer& optimizer, const DistributedContext& dist);

  /// After optimizer.step(): every parameter from its owner (bitwise the same on every rank).
  void broadcast_parameters() const;
  /// Collective: rank 0 receives the state of every parameter from its owner, so that it holds
  /// the whole optimizer state (what a checkpoint saves: it resumes at any world size, sharded or
  /// not) until drop_gathered_state.
  void gather_state_to_main() const;
  void drop_gathered_state() const;

  const std::vector<int64_t>& owners() const { return owners_; }

 private:
  Optimizer& optimizer_;
  const DistributedContext& dist_;
  std::vector<int64_t> owners_;  // per optimizer.parameters()
};

}  // namespace hypnos::train
