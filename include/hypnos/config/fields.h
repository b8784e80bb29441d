// How an options struct declares its YAML keys: a `visit` member template that names every field,
// its documentation and its valid range. The config loader, writer, override parser and docs all
// walk the same list, so a key can never be loadable but unwritable (or undocumented).
//
//   struct SleepOptions {
//     int64_t n_passes = 1;  ///< Default: 1
//     Eviction eviction = Eviction::kHard;
//     template <class V> void visit(V& v) {
//       v.field("n_passes", n_passes, "sleep passes per evicted window", config::Range{1, 64});
//       v.field("eviction", eviction, "what survives a window boundary: hard | sliding");
//     }
//   };
//
// Field types: bool, int64_t, double, std::string, std::vector<int64_t>, and enums that specialise
// config::EnumNames (names in enum-value order, snake_case as written in YAML). Nested structs use
// v.section("name", member), which calls member.visit(v) under the key prefix "name.".
#pragma once
#include <array>
#include <limits>
#include <string_view>

namespace hypnos::config {

/// Inclusive bounds on a numeric field (and on every element of an integer list).
struct Range {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
};

/// Specialise for every enum used as a config field:
///   template <> struct EnumNames<Eviction> {
///     static constexpr std::array<std::string_view, 2> names{"hard", "sliding"};
///   };
/// The enum's values must be 0, 1, ... in the order of `names`.
template <class E>
struct EnumNames;

}  // namespace hypnos::config
