// Depo (docs/tasks.md section 2): the edges of a shuffled cycle of named nodes as context, then
// queries "k hops from this name" answered by a name. The layout is separate from the draws so that
// a test can feed it the worked example's names and permutation.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hypnos/tasks/task.h"
#include "hypnos/tasks/task_options.h"

namespace hypnos::tasks {

struct DepoQuery {
  int64_t start = 0;  ///< node id the hops start from
  int64_t k = 1;      ///< hops; the answer is node (start + k) mod n
};

/// The drawn content of one example: node j's successor is (j + 1) mod n.
struct DepoDraw {
  std::vector<std::vector<int64_t>> names;  ///< names[j]: token ids of node j
  std::vector<int64_t> perm;                ///< context order: edge perm[i] -> perm[i] + 1
  std::vector<DepoQuery> queries;
};

/// Token ids: 0 PAD, 1..V non-final pieces, V+1..2V final pieces, 2V+k HOP_k, 2V+K+1 ANS.
class DepoTask : public Task {
 public:
  DepoTask(const DepoOptions& options, uint64_t seed);

  std::string_view name() const override { return "depo"; }
  int64_t vocab_size() const override { return 2 * options_.name_vocab + options_.k_max + 2; }
  int64_t seq_len() const override { return options_.context_len + options_.query_len; }
  Example example(Split split, uint64_t index) const override;
  std::string token_name(int64_t id) const override;

  /// The draws of docs/tasks.md section 2, in their order, from one example's stream.
  DepoDraw draw(Split split, Stream& stream) const;
  /// Tokens, targets, loss mask, groups and fields of a draw. Throws std::invalid_argument when
  /// the draw does not fit the options (a name piece out of range, context or queries too long).
  Example layout(const DepoDraw& draw) const;

  int64_t pad_id() const { return 0; }
  int64_t hop_id(int64_t k) const { return 2 * options_.name_vocab + k; }
  int64_t ans_id() const { return 2 * options_.name_vocab + options_.k_max + 1; }

 private:
  DepoOptions options_;
  uint64_t seed_;
};

}  // namespace hypnos::tasks
