// Shared by the GatedDeltaNet and JetBlock tests: a small mixer configuration and the check that
// a sequence run in two pieces (memory carried) equals one pass over the whole.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/nn/gated_delta_net.h"
#include "testing/numeric.h"

namespace hypnos::nn {

inline GatedDeltaNetOptions small() {
  return GatedDeltaNetOptions(16, 2, 8, 4).backend(ops::GdnBackend::kReference);
}

template <class Module>
void expect_split_equals_whole(Module& m) {
  const auto x = torch::randn({2, 13, 16}, torch::kDouble);
  const MixerOutput whole = m->forward(x, memory::LayerMemory{});
  const MixerOutput first = m->forward(x.narrow(1, 0, 6), memory::LayerMemory{});
  const MixerOutput second = m->forward(x.narrow(1, 6, 7), first.written);
  EXPECT_LT(testing::relative_error(at::cat({first.y, second.y}, 1), whole.y), 1e-12);
  EXPECT_LT(testing::relative_error(second.written.state, whole.written.state), 1e-12);
  EXPECT_EQ(whole.written.state.scalar_type(), at::kDouble);
}

}  // namespace hypnos::nn
