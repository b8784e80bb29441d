// ZeRO-1 over whole parameters: ownership, the post-step broadcast and the state gather for
// checkpoints.
#include "hypnos/train/optimizer_sharding.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

#include "hypnos/train/distributed.h"
#include "hypnos/train/optimizer.h"

namespace hypnos::train {

std::vector<int64_t> assign_owners(const std::vector<at::Tensor>& tensors, int64_t world_size) {
  if (world_size < 1) {
    throw std::invalid_argument("assign_owners: world size " + std::to_string(world_size) +
                                ", expected >= 1");
  }
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return tensors[a].numel() > tensors[b].numel(); });
  std::vector<int64_t> load(static_cast<size_t>(world_size), 0), owners(tensors.size(), 0);
  for (size_t i : order) {
    const auto lightest = std::min_element(load.begin(), load.end()) - load.begin();
    owners[i] = lightest;
    load[static_cast<size_t>(lightest)] += tensors[i].numel();
  }
  return owners;
}

OptimizerSharding::OptimizerSharding(Optimizer& optimizer, const DistributedContext& dist)
    : optimizer_(optimizer), dist_(dist) {
  owners_ = assign_owners(optimizer.parameters(), dist.world_size());
  std::vector<bool> owned(owners_.size());
  for (size_t i = 0; i < owners_.size(); ++i) owned[i] = owners_[i] == dist.rank();
  optimizer_.set_owned(std::move(owned));
  optimizer_.drop_unowned_state();
}

void OptimizerSharding::broadcast_parameters() const {
  const auto params = optimizer_.parameters();
  for (int64_t root = 0; root < dist_.world_size(); ++root) {
    std::vector<at::Tensor> from_root;
    for (size_t i = 0; i < params.size(); ++i) {
      if (owners_[i] == root) from_root.push_back(params[i]);
    }
    if (!from_root.empty()) dist_.broadcast_from(root, from_root);
  }
}

void OptimizerSharding::gather_state_to_main() const {
  const size_t n = owners_.size();
  if (n == 0) return;
  // Collectives take tensors on the group's device (NCCL has no CPU tensors).
  const at::Device device = optimizer_.parameters().front().device();
  // 1. Which parameters have state yet (none before the first step; a parameter that never had a
  // gradient in a single process has none either): each owner says so for its own.
  std::vector<int64_t> mine(n, 0);
  for (size_t i = 0; i < n; ++i) mine[i] = optimizer_.owns(i) && !optimizer_.state_of(i).empty();
  std::vector<std::vector<int64_t>> has_state;  // [root][parameter]
  for (int64_t root = 0; root < dist_.world_size(); ++root) {
    at::Tensor flags =
        root == dist_.rank()
            ? at::tensor(mine, at::kLong).to(device)
            : at::zeros({static_cast<int64_t>(n)}, at::TensorOptions(at::kLong).device(device));
    dist_.broadcast_from(root, {flags});
    flags = flags.cpu();
    has_state.emplace_back(flags.data_ptr<int64_t>(), flags.data_ptr<int64_t>() + n);
  }
  // 2. The state tensors, each owner's in one bucketed broadcast; rank 0 installs them.
  for (int64_t root = 0; root < dist_.world_size(); ++root) {
    std::vector<size_t> which;
    std::vector<std::vector<at::Tensor>> states;
    std::vector<at::Tensor> flat;
    for (size_t i = 0; i < n; ++i) {
      if (owners_[i] != root || has_state[static_cast<size_t>(root)][i] == 0) continue;
      std::vector<at::Tensor> s =
          root == dist_.rank() ? optimizer_.state_of(i) : optimizer_.empty_state_like(i);
      // The AdamW step count travels as a device tensor like the rest (NCCL has no CPU tensors).
      for (auto& t : s) {
        if (t.device() != device) t = t.to(device);
        flat.push_back(t);
      }
      which.push_back(i);
      states.push_back(std::move(s));
    }
    if (flat.empty()) continue;
    dist_.broadcast_from(root, flat);
    if (!dist_.is_main() || root == dist_.rank()) continue;
    for (size_t k = 0; k < which.size(); ++k) {
      auto& s = states[k];
      for (auto& t : s) {
        if (t.scalar_type() == at::kLong) t = t.cpu();  // AdamW's step count
      }
      optimizer_.set_state_of(which[k], s);
    }
  }
}

void OptimizerSharding::drop_gathered_state() const {
  optimizer_.drop_unowned_state();
}

}  // namespace hypnos::train
