#!/usr/bin/env bash
# R8: a non-finite loss (HYPNOS_FAULT_NONFINITE_STEP makes chosen steps' losses NaN). Policy stop:
# exit 3 before the update, with a checkpoint of the untouched weights that equals a clean run's.
# Policy skip: the update is skipped and logged, training goes on; too many skips in a row stop.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

expect_status 0 train "$SCRATCH/clean" train.steps=12

# stop: the 13th step (0-based 12) is NaN.
rc=0
HYPNOS_FAULT_NONFINITE_STEP=12 train "$SCRATCH/stop" train.steps=20 || rc=$?
[[ $rc == 3 ]] || fail "policy stop exited $rc, expected 3"
grep -q "non-finite loss at step 13: stopping before the update" "$SCRATCH/stop.err" ||
  fail "no stop message on stderr"
grep -q '"event":"nonfinite_stop","step":13,' "$SCRATCH/stop/events.jsonl" ||
  fail "no nonfinite_stop event for step 13"
[[ $(last_train_step "$SCRATCH/stop/metrics.jsonl") == 12 ]] || fail "a step after 12 was logged"
[[ $(checkpoint_steps "$SCRATCH/stop" | tr '\n' ' ') == "10 12 " ]] ||
  fail "expected checkpoints 10 and 12 (the state kept at the stop)"
same_weights "$(checkpoint "$SCRATCH/clean" 12)" "$(checkpoint "$SCRATCH/stop" 12)"

# skip: the 6th step is NaN; it is skipped (its batch consumed), the run finishes.
HYPNOS_FAULT_NONFINITE_STEP=5 expect_status 0 train "$SCRATCH/skip" train.steps=20 \
  train.nonfinite=skip
grep -q "non-finite loss at step 6: skipping the update" "$SCRATCH/skip.err" ||
  fail "no skip message on stderr"
grep -q '"event":"nonfinite_skip","step":6,' "$SCRATCH/skip/events.jsonl" || fail "no skip event"
all_but_6="1 2 3 4 5 7 8 9 10 11 12 13 14 15 16 17 18 19 20 "
[[ $(train_steps "$SCRATCH/skip/metrics.jsonl" | tr '\n' ' ') == "$all_but_6" ]] ||
  fail "expected train records for every step but 6"
diff <(losses "$SCRATCH/clean/metrics.jsonl" 1 5) <(losses "$SCRATCH/skip/metrics.jsonl" 1 5) ||
  fail "steps before the skip differ from the clean run"
if losses "$SCRATCH/skip/metrics.jsonl" | grep -qiv ' [0-9.e+-]*$'; then
  fail "a non-finite loss after the skip: the NaN reached the weights"
fi

# too many: steps 6, 7 and 8 are NaN and train.max_skips is 2: two skips, then a stop.
rc=0
HYPNOS_FAULT_NONFINITE_STEP=5,6,7 train "$SCRATCH/many" train.steps=20 train.nonfinite=skip \
  train.max_skips=2 || rc=$?
[[ $rc == 3 ]] || fail "too many skips exited $rc, expected 3"
events=$(grep -o '"event":"nonfinite_[a-z]*","step":[0-9]*' "$SCRATCH/many/events.jsonl" |
  sed -E 's/"event":"nonfinite_([a-z]*)","step":/\1 /' | tr '\n' ' ')
[[ $events == "skip 6 skip 7 stop 8 " ]] ||
  fail "expected skips at 6 and 7 and a stop at 8"
grep -q "non-finite loss at step 8: stopping before the update" "$SCRATCH/many.err" ||
  fail "no stop message after the skips"
echo "R8 non-finite loss: ok"
