#!/usr/bin/env bash
# R4: 60 steps straight vs 30 steps, exit, --resume to 60 (train.steps is resumable; the schedule is
# constant): steps 31-60 are bitwise equal, so are the final weights, and no step is logged twice.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

expect_status 0 train "$SCRATCH/straight" train.steps=60
expect_status 0 train "$SCRATCH/split" train.steps=30
[[ $(checkpoint_steps "$SCRATCH/split" | tail -n 1) == 30 ]] || fail "no checkpoint at step 30"
expect_status 0 train "$SCRATCH/split" train.steps=60 --resume
grep -q '"event":"resume","step":30' "$SCRATCH/split/events.jsonl" ||
  fail "the resume did not start from step 30"
grep -q '"event":"config_changed","change":"train.steps: 30 -> 60"' "$SCRATCH/split/events.jsonl" ||
  fail "the change of train.steps is not recorded in events.jsonl"

no_duplicate_steps "$SCRATCH/split/metrics.jsonl"
[[ $(losses "$SCRATCH/split/metrics.jsonl" 31 60 | wc -l) == 30 ]] || fail "steps 31-60 missing"
diff <(losses "$SCRATCH/straight/metrics.jsonl" 31 60) \
  <(losses "$SCRATCH/split/metrics.jsonl" 31 60) ||
  fail "steps 31-60 differ after the resume"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/split/metrics.jsonl") ||
  fail "the loss sequences differ"
same_weights "$(checkpoint "$SCRATCH/straight" 60)" "$(checkpoint "$SCRATCH/split" 60)"
echo "R4 resume: ok"
