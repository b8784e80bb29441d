// The ops' implementation choices a benchmark takes from its command line: the `model.*` keys of
// ops::OpsOptions (model.gdn_kernel=fp32, model.gdn_scan_slice=64, model.fused_ops=false, ...),
// read and validated as in a config, so that an A/B run names the same keys a run's config does.
#pragma once
#include <string>
#include <vector>

#include "hypnos/ops/ops_options.h"

namespace hypnos::bench {

/// OpsOptions from `key=value` overrides; an unknown key or value throws config::ConfigError
/// naming it (and the allowed values).
ops::OpsOptions ops_from_overrides(const std::vector<std::string>& overrides);

/// The same choices as overrides again (every key, for a child process).
std::vector<std::string> ops_overrides(const ops::OpsOptions& options);

}  // namespace hypnos::bench
