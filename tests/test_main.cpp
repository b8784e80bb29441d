// GoogleTest entry point of hypnos_tests: seeds nothing globally (each test passes its own
// generator).
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
