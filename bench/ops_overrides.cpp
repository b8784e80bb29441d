// OpsOptions on a benchmark's command line, through the config machinery (config/visitors.h).
#include "bench/ops_overrides.h"

#include "hypnos/config/visitors.h"

namespace hypnos::bench {
namespace {

/// The keys a benchmark accepts: the model section's ops keys, under their config names.
struct BenchOps {
  ops::OpsOptions ops;
  template <class V>
  void visit(V& v) {
    v.section("model", ops);
  }
};

}  // namespace

ops::OpsOptions ops_from_overrides(const std::vector<std::string>& overrides) {
  return config::load<BenchOps>("", overrides).ops;
}

std::vector<std::string> ops_overrides(const ops::OpsOptions& options) {
  std::vector<std::string> out;
  for (const config::KeyInfo& key : config::list_keys(BenchOps{options})) {
    out.push_back(key.key + "=" + key.default_value);
  }
  return out;
}

}  // namespace hypnos::bench
