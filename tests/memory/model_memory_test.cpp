// ModelMemory: named round trip, detaching, and what each eviction policy keeps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/memory/model_memory.h"

namespace hypnos::memory {

namespace {
ModelMemory sample() {
  ModelMemory m = ModelMemory::empty(2);
  m.layers[0].key = torch::randn({1, 2, 7, 4});
  m.layers[0].value = torch::randn({1, 2, 7, 4});
  m.layers[1].state = torch::randn({1, 2, 4, 4}, torch::requires_grad());
  m.layers[1].conv = torch::randn({1, 3, 24});
  return m;
}
}  // namespace

TEST(ModelMemory, NamedTensorsRoundTrip) {
  const ModelMemory m = sample();
  const auto named = m.named_tensors();
  ASSERT_EQ(named.size(), 4u);
  EXPECT_EQ(named[0].first, "layers.0.key");
  EXPECT_EQ(named[3].first, "layers.1.conv");
  const ModelMemory back = ModelMemory::from_named(2, named);
  EXPECT_TRUE(back.layers[1].state.equal(m.layers[1].state));
  EXPECT_FALSE(back.layers[0].state.defined());
}

TEST(ModelMemory, FromNamedRejectsUnknownSlotAndLayer) {
  EXPECT_THROW(ModelMemory::from_named(2, {{"layers.5.state", torch::zeros({1})}}),
               std::invalid_argument);
  try {
    ModelMemory::from_named(2, {{"layers.0.cache", torch::zeros({1})}});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.cache"), std::string::npos);
  }
}

TEST(ModelMemory, DetachedCutsTheGraph) {
  const ModelMemory m = sample();
  EXPECT_TRUE(m.layers[1].state.requires_grad());
  EXPECT_FALSE(m.detached().layers[1].state.requires_grad());
}

TEST(Eviction, HardKeepsOnlyTheState) {
  const ModelMemory next = evict(sample(), Eviction::kHard, 4);
  EXPECT_FALSE(next.layers[0].key.defined());
  EXPECT_FALSE(next.layers[1].conv.defined());
  EXPECT_TRUE(next.layers[1].state.defined());
}

TEST(Eviction, SlidingKeepsTheLastWindowMinusOneTokens) {
  const ModelMemory m = sample();
  const ModelMemory next = evict(m, Eviction::kSliding, 4);
  ASSERT_EQ(next.layers[0].retained(), 3);
  EXPECT_TRUE(next.layers[0].key.equal(m.layers[0].key.narrow(2, 4, 3)));
  EXPECT_TRUE(next.layers[0].value.equal(m.layers[0].value.narrow(2, 4, 3)));
  EXPECT_TRUE(next.layers[1].conv.equal(m.layers[1].conv));
}

}  // namespace hypnos::memory
