#!/usr/bin/env bash
# R3: two CPU runs with the same seed write bitwise equal loss sequences and weights; another seed
# gives other losses.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

expect_status 0 train "$SCRATCH/a" run.seed=7
expect_status 0 train "$SCRATCH/b" run.seed=7
expect_status 0 train "$SCRATCH/c" run.seed=8

[[ $(losses "$SCRATCH/a/metrics.jsonl" | wc -l) == 20 ]] || fail "expected 20 train records"
diff <(losses "$SCRATCH/a/metrics.jsonl") <(losses "$SCRATCH/b/metrics.jsonl") ||
  fail "same seed, different losses"
same_weights "$(checkpoint "$SCRATCH/a" 20)" "$(checkpoint "$SCRATCH/b" 20)"
if diff -q <(losses "$SCRATCH/a/metrics.jsonl") <(losses "$SCRATCH/c/metrics.jsonl") \
  >/dev/null; then
  fail "seeds 7 and 8 gave the same losses"
fi
echo "R3 determinism: ok"
