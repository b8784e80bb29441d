// The counter-based RNG of docs/tasks.md section 0: every example is a pure function of
// (seed, task, split, index), identical on every standard library (no std:: distributions).
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace hypnos::tasks {

/// splitmix64's finaliser (docs/tasks.md: mix).
constexpr uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// 64-bit FNV-1a of the task name.
constexpr uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

enum class Split : uint64_t { kTrain = 1, kTest = 2 };

/// Example key K = mix(mix(mix(mix(seed) ^ fnv1a64(task)) ^ split) ^ index).
constexpr uint64_t example_key(uint64_t seed, std::string_view task, Split split, uint64_t index) {
  return mix(mix(mix(mix(seed) ^ fnv1a64(task)) ^ static_cast<uint64_t>(split)) ^ index);
}

/// The draw stream of one example: draw j = mix(K + j * golden), j = 0, 1, ... in program order.
class Stream {
 public:
  explicit Stream(uint64_t key) : key_(key) {}
  Stream(uint64_t seed, std::string_view task, Split split, uint64_t index)
      : key_(example_key(seed, task, split, index)) {}

  uint64_t draw() { return mix(key_ + (counter_++) * 0x9E3779B97F4A7C15ull); }
  /// Number of draws taken so far (a cursor: a new Stream with the same key replays them).
  uint64_t counter() const { return counter_; }

  /// Uniform in [0, m) by rejection (t = (2^64 - m) mod m; draw until x >= t). m >= 1.
  uint64_t below(uint64_t m) {
    const uint64_t t = (0 - m) % m;
    for (;;) {
      const uint64_t x = draw();
      if (x >= t) return x % m;
    }
  }
  /// Uniform integer in [a, b].
  int64_t randint(int64_t a, int64_t b) {
    return a + static_cast<int64_t>(below(static_cast<uint64_t>(b - a) + 1));
  }
  /// Uniform double in [0, 1) with 53 random bits.
  double real() { return static_cast<double>(draw() >> 11) * 0x1.0p-53; }
  bool coin(double p) { return real() < p; }

  /// Fisher-Yates from the back: i = n-1..1, swap a[i], a[below(i+1)].
  template <class T>
  void shuffle(std::vector<T>& a) {
    for (size_t i = a.size(); i-- > 1;) std::swap(a[i], a[below(i + 1)]);
  }
  /// Partial Fisher-Yates from the front: the first k of a (in place), returned.
  template <class T>
  std::vector<T> sample(std::vector<T> a, size_t k) {
    for (size_t i = 0; i < k; ++i) std::swap(a[i], a[i + below(a.size() - i)]);
    a.resize(k);
    return a;
  }
  /// First index whose running sum exceeds real() * sum(w).
  size_t weighted(const std::vector<double>& w);
  /// Box-Muller, cos branch: u1 = 1 - real(), u2 = real().
  double gauss();

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

}  // namespace hypnos::tasks
